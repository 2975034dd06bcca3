using System.Net.Http.Json;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// One attempt of a sync: plan (SyncPlanner), scan where nothing is shared, send (SnapshotSender), commit a group.
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
        var (plans, committed) = await _planner.PlanAsync(http, state, snapshots, scans, ct);
        if (committed == snapshots.Count)
        {
            return (0, 0);
        }

        progress.SetTotalOnce(() => _planner.RangeBytes(plans, scans));
        var scanned = new Dictionary<Guid, ScanPlan?>();
        foreach (var plan in plans.Where(p => p.Scan))
        {
            scanned[plan.Snapshot.Id] = scans.TryGetValue(plan.Snapshot.Id, out var known) ? known : await ScanAsync(http, state, plan, progress, scans, ct);
        }

        long sent = 0, rangeBytes = 0;
        var kept = new List<SnapshotDto>();
        var bandwidth = ReplicaRequestChecks.CheckBandwidth(state.Bandwidth);
        foreach (var (snapshot, remote, common, resume, _) in plans)
        {
            var group = state.IsGroup ? $"{state.Volume}/{snapshot.Name}" : null;
            var (s, r) = await _sender.SendAsync(http, remote, snapshot, common, scanned.GetValueOrDefault(snapshot.Id), resume, state.Reverse, bandwidth, state.CompressionLevel, group, progress, wire, state.Reverse && state.DiscardWritesAtPartner ? kept : null, ct);
            sent += s;
            rangeBytes += r;
        }

        if (kept.Count > 0)
        {
            lock (_book.Lock)
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

    /// <summary>A hash scan (<see cref="SyncPlanner.ScanAsync"/>), recorded in the replica's state and the event log.</summary>
    private async Task<ScanPlan?> ScanAsync(HttpClient http, ReplicaState state, MemberPlan member, SyncProgress progress, Dictionary<Guid, ScanPlan> scans, CancellationToken ct)
    {
        var snapshot = member.Snapshot;
        if (await _planner.ScanAsync(http, state, snapshot, member.Remote, progress, scans, ct) is not { } plan)
        {
            return null;
        }

        lock (_book.Lock)
        {
            state.LastScannedBytes = plan.ScannedBytes;
        }

        _events(new ReplicationEvent("replica.scan", state.Volume, $"hash scan of {snapshot.Address} against {state.Partner}:{plan.Base.SnapshotName}: {plan.DifferingGranules:N0} of {HashScan.GranuleCount(snapshot.SizeBytes):N0} granules of 64 KiB differ, {plan.RangeBytes:N0} bytes of blocks to send; {plan.HashBytes:N0} bytes of hashes exchanged"));
        return plan;
    }
}
