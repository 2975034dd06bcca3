using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>
/// Fail-back and role changes: sending a promoted replica back to where it came from (reverse),
/// holding this site's own replication while the partner fails back into it (suspend), promoting
/// (with its role generation and standby exports) and demoting.
/// </summary>
internal sealed class FailBack
{
    private readonly Pool _pool;
    private readonly ReplicaReceiver _receiver;
    private readonly PartnerRegistry _partners;
    private readonly ServerIdentity _identity;
    private readonly ReplicaBook _book;
    private readonly SenderRetention _retention;
    private readonly Action<ReplicationEvent> _events;
    private readonly Func<string, OperationProgress?, CancellationToken, Task<ReplicaDto>> _sync;
    private readonly Func<IEnumerable<string>, string?> _bringUpStandby;

    /// <param name="sync">One sync of a replica (the reverse direction starts with one).</param>
    /// <param name="bringUpStandby">Brings up the standby exports of promoted volumes; says what came up.</param>
    public FailBack(Pool pool, ReplicaReceiver receiver, PartnerRegistry partners, ServerIdentity identity, ReplicaBook book, SenderRetention retention, Action<ReplicationEvent> events, Func<string, OperationProgress?, CancellationToken, Task<ReplicaDto>> sync, Func<IEnumerable<string>, string?> bringUpStandby)
    {
        _pool = pool;
        _receiver = receiver;
        _partners = partners;
        _identity = identity;
        _book = book;
        _retention = retention;
        _events = events;
        _sync = sync;
        _bringUpStandby = bringUpStandby;
    }

    /// <summary>
    /// Fail-back, at the site where a replica was promoted: sends the volume back to the partner it
    /// came from, into the volume it came from, as an incremental stream from the newest snapshot both
    /// sides share. The partner reverts what it wrote after that snapshot (keeping it as a snapshot)
    /// and holds its own replication of that volume. Later syncs of the reverse direction send only
    /// what changed here; 'replica promote' at the partner ends it.
    /// </summary>
    public async Task<ReplicaDto> ReverseAsync(string volume, OperationProgress? progress, bool discardWritesAtHome, CancellationToken cancellationToken)
    {
        if (_receiver.FindIncoming(volume) is null && _receiver.GroupMembers(volume) is { Count: > 0 } members)
        {
            return await ReverseGroupAsync(volume, members, progress, discardWritesAtHome, cancellationToken);
        }

        var incoming = _receiver.FindIncoming(volume)
            ?? throw new StorageException(StorageError.NotFound, $"{volume} was not replicated into this server; only a promoted replica can be sent back to its source");
        if (!incoming.Promoted)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{volume} is still a replica of {incoming.Partner}:{incoming.SourceVolume}; promote it first ('tidemark replica promote {volume}')");
        }

        _partners.Get(incoming.Partner);
        lock (_book.Lock)
        {
            if (_book.Replicas.TryGetValue(volume, out var existing) && !(existing.Reverse && existing.Partner == incoming.Partner))
            {
                throw new StorageException(StorageError.AlreadyExists, $"{volume} is already replicated to {existing.Partner}; delete that replica first");
            }

            if (!_book.Replicas.TryGetValue(volume, out var reverse))
            {
                reverse = new ReplicaState { Volume = volume, Partner = incoming.Partner, RemoteVolume = incoming.SourceVolume, Reverse = true };
                _book.Replicas[volume] = reverse;
            }

            reverse.DiscardWritesAtPartner = discardWritesAtHome;
            _book.Save();
        }

        _events(new ReplicationEvent("replica.reverse", volume, $"sending {volume} back to {incoming.Partner} as {incoming.SourceVolume} (fail-back)"));
        return await _sync(volume, progress, cancellationToken);
    }

    /// <summary>
    /// Fail-back of a replicated group as one unit: its promoted members are cut together here (a
    /// group of that name is made of them if this site has none) and sent back into the same volumes
    /// at the partner, which commits all members' snapshots together and holds its own replication
    /// of the group until 'replica promote GROUP' there.
    /// </summary>
    private async Task<ReplicaDto> ReverseGroupAsync(string group, IReadOnlyList<string> members, OperationProgress? progress, bool discardWritesAtHome, CancellationToken cancellationToken)
    {
        var records = members.Select(m => _receiver.FindIncoming(m)!).ToList();
        if (records.FirstOrDefault(r => !r.Promoted) is { } notPromoted)
        {
            throw new StorageException(StorageError.InvalidArgument, $"member {notPromoted.Volume} of group {group} is still a replica of {notPromoted.Partner}; promote the group first ('tidemark replica promote {group}')");
        }

        var partner = records[0].Partner;
        if (records.Any(r => r.Partner != partner))
        {
            throw new StorageException(StorageError.InvalidArgument, $"the members of group {group} came from different partners; send them back one by one");
        }

        _partners.Get(partner);
        if (_pool.Groups.FirstOrDefault(g => g.Name == group) is { } existing)
        {
            if (!existing.Volumes.Order(StringComparer.Ordinal).SequenceEqual(members.Order(StringComparer.Ordinal)))
            {
                throw new StorageException(StorageError.InvalidArgument, $"group {group} here has members {string.Join(", ", existing.Volumes)}, not the replicated {string.Join(", ", members)}; delete or rename it first");
            }
        }
        else
        {
            _pool.CreateGroup(group, members);
        }

        lock (_book.Lock)
        {
            if (_book.Replicas.TryGetValue(group, out var replica) && !(replica.Reverse && replica.Partner == partner))
            {
                throw new StorageException(StorageError.AlreadyExists, $"{group} is already replicated to {replica.Partner}; delete that replica first");
            }

            if (!_book.Replicas.TryGetValue(group, out var reverse))
            {
                reverse = new ReplicaState { Volume = group, Partner = partner, RemoteVolume = group, Reverse = true, IsGroup = true };
                _book.Replicas[group] = reverse;
            }

            reverse.DiscardWritesAtPartner = discardWritesAtHome;
            _book.Save();
        }

        _events(new ReplicationEvent("replica.reverse", group, $"sending group {group} ({string.Join(", ", members)}) back to {partner} (fail-back)"));
        return await _sync(group, progress, cancellationToken);
    }

    /// <summary>A fail-back stream arrived into <paramref name="volume"/>: this server's replication of it is held until it is promoted here again.</summary>
    public void SuspendForFailBack(string volume, string partner)
    {
        lock (_book.Lock)
        {
            if (_book.Replicas.TryGetValue(volume, out var state) && !state.Reverse && state.Suspended is null)
            {
                state.Suspended = $"{partner} is failing back into {volume}; 'tidemark replica promote {volume}' here makes this site the primary again and resumes it";
                DropPendingLocked(state);
                _book.Save();
            }
        }
    }

    /// <summary>
    /// Promotes a replica here. For a fail-back (this site's own replication of the volume was held)
    /// that replication resumes and the partner is asked to demote its copy to a replica again; the
    /// note says how that went (the promotion stands either way).
    /// </summary>
    public async Task<(SnapshotInfo Snapshot, string? Note)> PromoteAsync(string volume, CancellationToken cancellationToken)
    {
        if (_receiver.FindIncoming(volume) is null && _receiver.GroupMembers(volume) is { Count: > 0 } members)
        {
            // A replicated group is promoted as one unit: every member at the newest group snapshot
            // they all share (committed together, so their newest snapshots are that one).
            if (members.FirstOrDefault(m => !_pool.TryGetVolume(m, out _) || _pool.ListSnapshots(m).Count == 0) is { } incomplete)
            {
                throw new StorageException(StorageError.InvalidArgument, $"member {incomplete} of group {volume} has no complete replicated snapshot; nothing of the group was promoted");
            }

            var promoted = members.Select(_receiver.Promote).ToList();
            var standby = _bringUpStandby(members);
            var failBack = await ResumeAfterFailBackAsync(volume, _receiver.FindIncoming(members[0])!.Partner, members, cancellationToken);
            var groupNote = string.Join("; ", new[] { $"promoted the members of group {volume} together: {string.Join(", ", promoted.Select(s => s.Address))}", standby, failBack }.OfType<string>());
            _events(new ReplicationEvent("replica.promote", volume, groupNote));
            return (promoted[0], groupNote);
        }

        var incoming = _receiver.FindIncoming(volume);
        var snapshot = _receiver.Promote(volume);
        var note = incoming is null ? null : await ResumeAfterFailBackAsync(volume, incoming.Partner, [incoming.SourceVolume], cancellationToken);
        if (note is null)
        {
            var standby = _bringUpStandby([volume]);
            _events(new ReplicationEvent("replica.promote", volume, $"{volume} is a primary here as of {snapshot.Address}{(standby is null ? "" : $"; {standby}")}"));
            return (snapshot, standby);
        }

        _events(new ReplicationEvent("replica.promote", volume, $"{volume} is the primary here again as of {snapshot.Address} (fail-back): {note}"));
        return (snapshot, note);
    }

    /// <summary>
    /// After a promotion here: if this site's own replication of <paramref name="volume"/> (a volume
    /// or group) was held for a fail-back, it resumes and the partner is asked to make its copies
    /// (<paramref name="remoteVolumes"/>) replicas again. Returns what happened, or null when there
    /// was no fail-back; the promotion stands either way.
    /// </summary>
    private async Task<string?> ResumeAfterFailBackAsync(string volume, string partnerName, IReadOnlyList<string> remoteVolumes, CancellationToken cancellationToken)
    {
        ReplicaState? resumed = null;
        lock (_book.Lock)
        {
            if (_book.Replicas.TryGetValue(volume, out var state) && state.Suspended is not null)
            {
                state.Suspended = null;
                DropPendingLocked(state);
                _book.Save();
                resumed = state;
            }
        }

        if (resumed is null)
        {
            return null;
        }

        try
        {
            var partner = _partners.Get(partnerName);
            using var http = PartnerLink.Create(_identity, partner, TimeSpan.FromSeconds(30));
            foreach (var remote in remoteVolumes)
            {
                // The demotion carries this site's new role generation: from now on the partner
                // refuses its own older streams (an old reverse sync) into this volume. A group's
                // members keep their names at both sites.
                var generation = _receiver.GenerationOf(_pool.TryGetVolume(volume, out _) ? volume : remote);
                using var response = await http.PostAsync($"{PartnerLink.PathPrefix.TrimStart('/')}/volumes/{Uri.EscapeDataString(remote)}/demote?generation={generation}", null, cancellationToken);
                await PartnerLink.EnsureSuccessAsync(response, $"{partnerName} could not demote {remote}", cancellationToken);
            }

            return $"{partnerName} made {string.Join(", ", remoteVolumes)} {(remoteVolumes.Count == 1 ? "a replica" : "replicas")} again; replication {volume} -> {resumed.Partner} resumes";
        }
        catch (Exception ex) when (ex is HttpRequestException or StorageException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return $"{partnerName} could not demote {string.Join(", ", remoteVolumes)} ({SyncFailure.Describe(ex)}); run 'tidemark replica demote' for {(remoteVolumes.Count == 1 ? "it" : "each")} there before the next sync";
        }
    }

    /// <summary>
    /// A transfer a sync left unfinished before a fail-back can never be continued: its snapshot
    /// holds this site's state from before the partner's fail-back overwrote it (and sent from a
    /// base older than the snapshot both sites now share, it would roll the partner back). What it
    /// held is in the snapshot the fail-back kept (a split brain needs that consent), so it is dropped.
    /// </summary>
    private void DropPendingLocked(ReplicaState state)
    {
        if (state.PendingSnapshot is not { } pending)
        {
            return;
        }

        _retention.DeleteFromMembers(_book.Members(state), pending);
        state.PendingSnapshot = null;
        state.PendingConsistency = null;
    }

    /// <summary>Makes a promoted replica here a replica again (the other site failed back) and drops the reverse replication that fed it back.</summary>
    public SnapshotInfo? Demote(string volume, long? generation = null)
    {
        string? returnTo;
        lock (_book.Lock)
        {
            // The last snapshot sent back is the one the other site has; the volume returns to it.
            returnTo = _book.Replicas.TryGetValue(volume, out var reverse) && reverse.Reverse ? reverse.LastSnapshot
                : _book.Replicas.Values.FirstOrDefault(r => r.Reverse && r.IsGroup && _book.Members(r).Contains(volume))?.LastSnapshot;
        }

        if (generation is { } theirs && theirs < _receiver.GenerationOf(volume))
        {
            throw new StaleGenerationException($"a demotion of {volume} from role generation {theirs} is stale: this site is at {_receiver.GenerationOf(volume)}; nothing changed");
        }

        var kept = _receiver.Demote(volume, returnTo, generation);
        lock (_book.Lock)
        {
            if (_book.Replicas.TryGetValue(volume, out var state) && state.Reverse)
            {
                _book.Replicas.Remove(volume);
                _book.Save();
            }

            // A group sent back as one unit: its reverse replication ends with its last member's
            // demotion (the others still return to the snapshot it sent last).
            foreach (var group in _book.Replicas.Values.Where(r => r.Reverse && r.IsGroup && _book.Members(r).Contains(volume) && !_book.Members(r).Any(_receiver.Promoted.Contains)).ToList())
            {
                _book.Replicas.Remove(group.Volume);
                _book.Save();
            }
        }

        _events(new ReplicationEvent("replica.demote", volume, $"{volume} is a replica again{(kept is null ? "" : $"; what it held beyond its newest snapshot is kept as {kept.Address}")}"));
        return kept;
    }
}
