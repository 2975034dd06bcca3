using System.Net;
using System.Net.Http.Json;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>One member's part of a sync: what to send, from which base, from which offset, and whether a hash scan decides the ranges.</summary>
internal sealed record MemberPlan(SnapshotInfo Snapshot, string Remote, SnapshotInfo? Common, long Resume, bool Scan);

/// <summary>
/// Plans a replication cycle: for each member snapshot, what the partner already has (its
/// snapshots, a transfer under way), the newest snapshot both sides share, and, when they share
/// none, the hash scan that finds what differs.
/// </summary>
internal sealed class SyncPlanner(Pool pool, ReplicaReceiver receiver)
{
    /// <summary>
    /// The members still to send (skipping those the partner has or holds complete) and how many
    /// it has already committed (an earlier attempt got through; only its answer was lost).
    /// </summary>
    public async Task<(List<MemberPlan> Plans, int Committed)> PlanAsync(HttpClient http, ReplicaState state, IReadOnlyList<SnapshotInfo> snapshots, IReadOnlyDictionary<Guid, ScanPlan> scans, CancellationToken ct)
    {
        var plans = new List<MemberPlan>();
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
            var common = pool.ListSnapshots(snapshot.Volume).Where(s => ids.Contains(s.Id) && s.Id != snapshot.Id).MaxBy(s => s.CreatedAt);
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
            plans.Add(new MemberPlan(snapshot, remote, common, resume, scan));
        }

        return (plans, committed);
    }

    /// <summary>The bytes of ranges the plans cover: known from the diffs (or a scan), so the ETA is right from the start, also after a resume.</summary>
    public long RangeBytes(IEnumerable<MemberPlan> plans, IReadOnlyDictionary<Guid, ScanPlan> scans) =>
        plans.Sum(p => p.Scan ? scans.TryGetValue(p.Snapshot.Id, out var known) ? known.RangeBytes : p.Snapshot.SizeBytes : SnapshotStreamWriter.RangeBytes(pool, p.Snapshot.Address, p.Common?.Address));

    /// <summary>
    /// Compares <paramref name="snapshot"/> with the partner's volume by hash scan and remembers what
    /// differs for the rest of the sync (retries resume the stream of those ranges). Null when the
    /// partner has no such volume: then it gets a full stream.
    /// </summary>
    public async Task<ScanPlan?> ScanAsync(HttpClient http, ReplicaState state, SnapshotInfo snapshot, string remote, SyncProgress progress, Dictionary<Guid, ScanPlan> scans, CancellationToken ct)
    {
        using var response = await http.PostAsync($"{remote}/scan?seed={(state.Seed ? "true" : "false")}&reverse={(state.Reverse ? "true" : "false")}&generation={receiver.GenerationOf(snapshot.Volume)}", null, ct);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            progress.AddToTotal(-snapshot.SizeBytes + SnapshotStreamWriter.RangeBytes(pool, snapshot.Address, null));
            return null;
        }

        await PartnerLink.EnsureSuccessAsync(response, "the partner cannot compare its copy", ct);
        var scanBase = await response.Content.ReadFromJsonAsync<ScanBaseDto>(ApiJson.Options, ct)
            ?? throw new StorageException(StorageError.Unavailable, "the partner's answer to a hash scan was empty");
        var key = scanBase.SnapshotId;
        var common = state.Reverse ? CommonForFailBackScan(snapshot) : null;
        var plan = await HashScanner.ScanAsync(http, remote, pool.OpenSnapshot(snapshot.Address), scanBase, covered => progress.Covered(key, covered, resumed: false), ct, common?.Reference);
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
        return plan;
    }

    /// <summary>
    /// The snapshot this site was promoted from (the last one replicated here from the partner, so
    /// the partner's state when they parted), with the granules changed here since it; null when it
    /// is gone here.
    /// </summary>
    private (SnapshotInfo Snapshot, ScanReference Reference)? CommonForFailBackScan(SnapshotInfo sending)
    {
        if (receiver.FindIncoming(sending.Volume)?.LastSnapshotId is not { } id || pool.FindSnapshotById(sending.Volume, id) is not { } common)
        {
            return null;
        }

        var changed = new HashSet<long>();
        foreach (var range in pool.Diff(sending.Volume, common.Name, sending.Name))
        {
            for (var g = range.OffsetBytes / HashScan.GranuleBytes; g * HashScan.GranuleBytes < range.OffsetBytes + range.LengthBytes; g++)
            {
                changed.Add(g);
            }
        }

        return (common, new ScanReference(pool.OpenSnapshot(common.Address), changed));
    }

    private static async Task<PartialReceiveDto?> GetPartialAsync(HttpClient http, string remote, CancellationToken ct)
    {
        using var response = await http.GetAsync($"{remote}/partial", ct);
        return response.StatusCode == HttpStatusCode.NoContent ? null : await response.Content.ReadFromJsonAsync<PartialReceiveDto>(ApiJson.Options, ct);
    }
}
