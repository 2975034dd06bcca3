using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// Sending a sync: every snapshot to send, hash scans when no snapshot is shared, one stream with resume.
public sealed partial class ReplicaManager
{
    /// <summary>
    /// Sends every member's stream (one for a volume) from the newest snapshot both sides share,
    /// resuming where the partner durably got, skipping what it already has; for a group, then asks
    /// the partner to commit the members together. Sets the progress total first (the bytes of ranges
    /// to send are known from the diffs), so the ETA is right, also after a resume.
    /// </summary>
    private async Task<(long Sent, long RangeBytes)> SendAllAsync(HttpClient http, ReplicaState state, IReadOnlyList<SnapshotInfo> snapshots, SyncProgress progress, Dictionary<Guid, ScanPlan> scans, WireCounter wire, CancellationToken ct)
    {
        await SendStandbyAsync(http, state, ct);
        var plans = new List<(SnapshotInfo Snapshot, string Remote, SnapshotInfo? Common, long Resume, bool Scan)>();
        var committed = 0;
        foreach (var snapshot in snapshots)
        {
            var remote = $"{PartnerLink.PathPrefix.TrimStart('/')}/volumes/{Uri.EscapeDataString(state.IsGroup ? snapshot.Volume : state.RemoteVolume)}";
            List<RemoteSnapshotDto> theirs;
            using (var listed = await http.GetAsync($"{remote}/snapshots", ct))
            {
                await PartnerLink.EnsureSuccessAsync(listed, "the partner did not list its snapshots", ct);
                theirs = await listed.Content.ReadFromJsonAsync<List<RemoteSnapshotDto>>(ApiJson.Options, ct) ?? [];
            }

            if (theirs.Any(s => s.Id == snapshot.Id))
            {
                committed++; // an earlier attempt got through; only its answer was lost
                continue;
            }

            var ids = theirs.Select(s => s.Id).ToHashSet();
            var common = _pool.ListSnapshots(snapshot.Volume).Where(s => ids.Contains(s.Id) && s.Id != snapshot.Id).MaxBy(s => s.CreatedAt);
            var partial = await GetPartialAsync(http, remote, ct);
            if (partial is { Complete: true } done && done.SnapshotId == snapshot.Id)
            {
                continue; // this member's whole stream is in and waits for the commit
            }

            // With no snapshot in common, the partner's volume (a seed, a replica whose base was
            // lost, the old primary failing back) is compared by hash scan, unless this snapshot's
            // full stream is already under way there.
            var resume = partial is { } p && p.SnapshotId == snapshot.Id ? p.AppliedOffset : 0;
            var scan = scans.ContainsKey(snapshot.Id) || (common is null && partial?.SnapshotId != snapshot.Id);
            plans.Add((snapshot, remote, common, resume, scan));
        }

        if (committed == snapshots.Count)
        {
            return (0, 0);
        }

        progress.SetTotalOnce(() => plans.Sum(p => p.Scan ? scans.TryGetValue(p.Snapshot.Id, out var known) ? known.RangeBytes : p.Snapshot.SizeBytes : SnapshotStreamWriter.RangeBytes(_pool, p.Snapshot.Address, p.Common?.Address)));
        var scanned = new Dictionary<Guid, ScanPlan?>();
        foreach (var plan in plans.Where(p => p.Scan))
        {
            scanned[plan.Snapshot.Id] = scans.TryGetValue(plan.Snapshot.Id, out var known) ? known : await ScanAsync(http, state, plan.Snapshot, plan.Remote, progress, scans, ct);
        }

        long sent = 0, rangeBytes = 0;
        var kept = new List<SnapshotDto>();
        var bandwidth = ReplicaRequestChecks.CheckBandwidth(state.Bandwidth);
        foreach (var (snapshot, remote, common, resume, _) in plans)
        {
            var group = state.IsGroup ? $"{state.Volume}/{snapshot.Name}" : null;
            var (s, r) = await SendAsync(http, remote, snapshot, common, scanned.GetValueOrDefault(snapshot.Id), resume, state.Reverse, bandwidth, state.CompressionLevel, group, progress, wire, state.Reverse && state.DiscardWritesAtPartner ? kept : null, ct);
            sent += s;
            rangeBytes += r;
        }

        if (kept.Count > 0)
        {
            lock (_lock)
            {
                // One address per member (VOLUME@pre-rollback-...), so each member's kept snapshot is named.
                state.DiscardedWrites = $"split brain resolved: {state.Partner} had written after the common snapshot; those writes are kept there as {string.Join(", ", kept.Select(k => k.Address))}";
                state.DiscardWritesAtPartner = false;
            }

            _events(new ReplicationEvent("replica.split-brain", state.Volume, state.DiscardedWrites));
        }

        if (state.IsGroup)
        {
            var commit = new GroupCommitRequest($"{state.Volume}/{snapshots[0].Name}", [.. snapshots.Select(s => new GroupMemberCommitDto(s.Volume, s.Id))], state.Reverse);
            using var response = await http.PostAsJsonAsync($"{PartnerLink.PathPrefix.TrimStart('/')}/groups/commit", commit, ApiJson.Options, ct);
            if (!response.IsSuccessStatusCode)
            {
                var problem = await PartnerLink.TryReadProblemAsync(response, ct);
                throw new StorageException(StorageError.Unavailable, $"the partner did not commit group {state.Volume}: {problem?.Detail ?? response.ReasonPhrase}");
            }
        }

        return (sent, rangeBytes);
    }

    /// <summary>
    /// Compares <paramref name="snapshot"/> with the partner's volume by hash scan and remembers what
    /// differs for the rest of the sync (retries resume the stream of those ranges). Null when the
    /// partner has no such volume: then it gets a full stream.
    /// </summary>
    private async Task<ScanPlan?> ScanAsync(HttpClient http, ReplicaState state, SnapshotInfo snapshot, string remote, SyncProgress progress, Dictionary<Guid, ScanPlan> scans, CancellationToken ct)
    {
        using var response = await http.PostAsync($"{remote}/scan?seed={(state.Seed ? "true" : "false")}&reverse={(state.Reverse ? "true" : "false")}&generation={_receiver.GenerationOf(snapshot.Volume)}", null, ct);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            progress.AddToTotal(-snapshot.SizeBytes + SnapshotStreamWriter.RangeBytes(_pool, snapshot.Address, null));
            return null;
        }

        await PartnerLink.EnsureSuccessAsync(response, "the partner cannot compare its copy", ct);
        var scanBase = await response.Content.ReadFromJsonAsync<ScanBaseDto>(ApiJson.Options, ct)
            ?? throw new StorageException(StorageError.Unavailable, "the partner's answer to a hash scan was empty");
        var key = scanBase.SnapshotId;
        var common = state.Reverse ? CommonForFailBackScan(snapshot) : null;
        var plan = await HashScanner.ScanAsync(http, remote, _pool.OpenSnapshot(snapshot.Address), scanBase, covered => progress.Covered(key, covered, resumed: false), ct, common?.Reference);
        if (state.Reverse)
        {
            // The same split-brain rule as a fail-back with a shared snapshot: the partner's copy
            // must still be the snapshot this site was promoted from, or the administrator says
            // its writes go (--discard-writes-at home). Without that snapshot nobody can tell.
            plan = common is null
                ? plan with { PartnerDivergedAfter = ReplicaReceiver.UnknownCommon, PartnerChangedGranules = -1 }
                : plan with { PartnerDivergedAfter = plan.PartnerChangedGranules > 0 ? common.Value.Snapshot.Name : null };
        }

        scans[snapshot.Id] = plan;
        progress.AddToTotal(plan.RangeBytes);
        lock (_lock)
        {
            state.LastScannedBytes = plan.ScannedBytes;
        }

        _events(new ReplicationEvent("replica.scan", state.Volume, $"hash scan of {snapshot.Address} against {state.Partner}:{scanBase.SnapshotName}: {plan.DifferingGranules:N0} of {HashScan.GranuleCount(snapshot.SizeBytes):N0} granules of 64 KiB differ, {plan.RangeBytes:N0} bytes of blocks to send; {plan.HashBytes:N0} bytes of hashes exchanged"));
        return plan;
    }

    /// <summary>
    /// The snapshot this site was promoted from (the last one replicated here from the partner, so
    /// the partner's state when they parted), with the granules changed here since it; null when it
    /// is gone here.
    /// </summary>
    private (SnapshotInfo Snapshot, ScanReference Reference)? CommonForFailBackScan(SnapshotInfo sending)
    {
        if (_receiver.FindIncoming(sending.Volume)?.LastSnapshotId is not { } id || _pool.FindSnapshotById(sending.Volume, id) is not { } common)
        {
            return null;
        }

        var changed = new HashSet<long>();
        foreach (var range in _pool.Diff(sending.Volume, common.Name, sending.Name))
        {
            for (var g = range.OffsetBytes / HashScan.GranuleBytes; g * HashScan.GranuleBytes < range.OffsetBytes + range.LengthBytes; g++)
            {
                changed.Add(g);
            }
        }

        return (common, new ScanReference(_pool.OpenSnapshot(common.Address), changed));
    }

    private static async Task<PartialReceiveDto?> GetPartialAsync(HttpClient http, string remote, CancellationToken ct)
    {
        using var response = await http.GetAsync($"{remote}/partial", ct);
        return response.StatusCode == HttpStatusCode.NoContent ? null : await response.Content.ReadFromJsonAsync<PartialReceiveDto>(ApiJson.Options, ct);
    }

    /// <summary>Sends one member's stream; returns its bytes on the wire and of ranges covered. Every byte on the wire also goes to <paramref name="wire"/>, also when it fails.</summary>
    private async Task<(long Sent, long RangeBytes)> SendAsync(HttpClient http, string remote, SnapshotInfo snapshot, SnapshotInfo? common, ScanPlan? scan, long resume, bool reverse, long? bytesPerSecond, int level, string? group, SyncProgress progress, WireCounter wire, List<SnapshotDto>? discardKeptAt, CancellationToken ct)
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
                    header = SnapshotStreamWriter.Write(_pool, snapshot.Address, common?.Address, output, new StreamExportOptions
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
        Stream body = bytesPerSecond is { } rate ? new RateLimitedStream(counting, rate, _time) : counting;
        using var content = new StreamContent(body, 1 << 20);
        var query = $"resume={resume}&generation={_receiver.GenerationOf(snapshot.Volume)}{(reverse ? "&reverse=true" : "")}{(discardKeptAt is null ? "" : "&discard=true")}{(group is null ? "" : $"&group={Uri.EscapeDataString(group)}")}{(scan?.PartnerDivergedAfter is { } after ? $"&divergedAfter={Uri.EscapeDataString(after)}&changedGranules={scan.PartnerChangedGranules}" : "")}";
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
