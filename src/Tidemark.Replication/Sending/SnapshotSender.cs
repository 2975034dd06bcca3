using System.IO.Pipelines;
using System.Net;
using System.Text.Json;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>
/// Sends one member's snapshot stream to the partner: the stream writer on one side of a pipe, the
/// HTTP request body on the other, counted on the wire and optionally rate limited; resumes at the
/// offset the partner durably reached.
/// </summary>
internal sealed class SnapshotSender(Pool pool, ReplicaReceiver receiver, TimeProvider time)
{
    /// <summary>
    /// The request header that carries the snapshot's consistency record to the partner (ADR 0015),
    /// as the server at this site gives it (<see cref="ReplicaManager.SnapshotLabel"/>: opaque to
    /// this module, base64 of its JSON); absent for a crash-consistent snapshot. Beside the stream,
    /// not in it: the stream format (and its golden samples) stays as it is, and a partner that does
    /// not know the header ignores it.
    /// </summary>
    public const string ConsistencyHeader = "Tidemark-Consistency";

    /// <summary>See <see cref="ConsistencyHeader"/>; null: none sent.</summary>
    public Func<Guid, string?>? SnapshotLabel { get; set; }

    /// <summary>Sends one member's stream; returns its bytes on the wire and of ranges covered. Every byte on the wire also goes to <paramref name="wire"/>, also when it fails.</summary>
    public async Task<(long Sent, long RangeBytes)> SendAsync(HttpClient http, string remote, SnapshotInfo snapshot, SnapshotInfo? common, ScanPlan? scan, long resume, bool reverse, long? bytesPerSecond, int level, string? group, SyncProgress progress, WireCounter wire, List<SnapshotDto>? discardKeptAt, CancellationToken ct)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 4 << 20, resumeWriterThreshold: 2 << 20));
        var counting = new CountingStream(pipe.Reader.AsStream(), wire);
        long skipped = 0;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        StreamHeader? header = null;
        var writer = Task.Run(
            () =>
            {
                try
                {
                    using var output = pipe.Writer.AsStream();
                    header = SnapshotStreamWriter.Write(pool, snapshot.Address, common?.Address, output, new StreamExportOptions
                    {
                        ResumeOffset = resume,
                        CompressionLevel = level,
                        Ranges = scan?.Ranges,
                        RemoteBase = scan is null ? null : (scan.Base.SnapshotId, scan.Base.SnapshotName),
                        Resumed = before =>
                        {
                            skipped = before;
                            progress.Covered(snapshot.Id, before, resumed: true);
                        },
                        Progress = covered => progress.Covered(snapshot.Id, covered, resumed: false),
                    }, stop.Token);
                }
                catch (Exception ex)
                {
                    pipe.Writer.Complete(ex);
                    throw;
                }
            },
            stop.Token);
        Stream body = bytesPerSecond is { } rate ? new RateLimitedStream(counting, rate, time) : counting;
        using var content = new StreamContent(body, 1 << 20);
        if (SnapshotLabel?.Invoke(snapshot.Id) is { } label)
        {
            content.Headers.TryAddWithoutValidation(ConsistencyHeader, label);
        }

        var query = $"resume={resume}&generation={receiver.GenerationOf(snapshot.Volume)}{(reverse ? "&reverse=true" : "")}{(discardKeptAt is null ? "" : "&discard=true")}{(group is null ? "" : $"&group={Uri.EscapeDataString(group)}")}{(scan?.PartnerDivergedAfter is { } after ? $"&divergedAfter={Uri.EscapeDataString(after)}&changedGranules={scan.PartnerChangedGranules}" : "")}";
        HttpResponseMessage response;
        try
        {
            response = await http.PostAsync($"{remote}/receive?{query}", content, ct);
        }
        catch
        {
            await StopWriterAsync();
            throw;
        }

        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                // A refusal may come before the stream was read: the partner's reason is the
                // result, not whatever the abandoned writer reports.
                await StopWriterAsync();
                await PartnerLink.EnsureSuccessAsync(response, "the partner refused the stream", ct);
            }

            await writer.ConfigureAwait(false);
            if (discardKeptAt is not null && await KeptStateAsync(response, ct) is { } keptState)
            {
                discardKeptAt.Add(keptState);
            }
        }

        // The ranges this attempt covered, for the bytes this attempt sent: what a resume skipped
        // went over the wire in an earlier attempt, so counting it would inflate the ratio.
        return (counting.BytesRead, Math.Max(0, (header?.RangeBytes ?? 0) - skipped));

        // A single volume answers 200 with the import; a group member 202 with only what was kept
        // (empty from a partner of an older version, which kept it without saying).
        static async Task<SnapshotDto?> KeptStateAsync(HttpResponseMessage response, CancellationToken ct)
        {
            var body = await response.Content.ReadAsStringAsync(ct);
            return (response.StatusCode, body.Length) switch
            {
                (HttpStatusCode.OK, > 0) => JsonSerializer.Deserialize<StreamImportDto>(body, ApiJson.Options)?.KeptState,
                (HttpStatusCode.Accepted, > 0) => JsonSerializer.Deserialize<GroupMemberReceivedDto>(body, ApiJson.Options)?.KeptState,
                _ => null,
            };
        }

        // The writer may be blocked on a full pipe that nobody reads any more: completing the
        // reader releases it, the token stops it at its next record.
        async Task StopWriterAsync()
        {
            await stop.CancelAsync();
            await pipe.Reader.CompleteAsync();
            try
            {
                await writer.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Stopped because the request ended; the request's outcome is what counts.
            }
        }
    }
}
