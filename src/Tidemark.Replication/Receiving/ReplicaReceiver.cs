using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;

namespace Tidemark.Replication;

/// <summary>
/// The receiving end of replication (on the partner-only listener). A stream is applied to the live
/// replica volume, which nobody else writes; the replica's newest snapshot is always a complete one.
/// When a transfer breaks off, what was applied is kept and its offset remembered so the sender
/// resumes there; a fresh transfer first discards any such leftovers. The offset is made durable
/// every few seconds while a transfer runs (flush, then its "receiving" record), so a transfer also
/// resumes after this server was killed. Its state is kept in the pool (ReplicaReceiver.State.cs).
/// </summary>
public sealed partial class ReplicaReceiver
{
    private readonly Pool _pool;
    private readonly ReceiverRetention _retention;
    private readonly ConcurrentDictionary<string, PartialReceiveDto> _partial = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Lock> _locks = new(StringComparer.Ordinal);

    // Members of a replicated group whose whole stream is applied and verified, waiting for the
    // group's commit (in memory: a restart makes the sender send them again).
    private readonly ConcurrentDictionary<string, PendingMember> _pending = new(StringComparer.Ordinal);

    private readonly HashSet<string> _promoted = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, IncomingReplicaDto> _incoming = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, IReadOnlyList<CreateExportRequest>> _standby = new(StringComparer.Ordinal);

    /// <summary>Names of the snapshots a hash scan compares against: of a seed, and of a volume failed back into.</summary>
    public const string ScanBasePrefix = "hashscan-";
    public const string FailBackBasePrefix = "pre-failback-";

    /// <summary>Name of the snapshot that keeps what a volume held when it was accepted as a replica target.</summary>
    public const string AcceptedPrefix = "pre-seed-";

    /// <summary>A transfer that runs records how far it durably got at least this often (and at its end or failure).</summary>
    public static readonly TimeSpan SaveProgressEvery = TimeSpan.FromSeconds(2);

    /// <param name="legacyPaths">DATA/promoted.json, incoming.json, receiving.json and standby.json of older versions: imported into the pool, then renamed NAME.migrated.</param>
    public ReplicaReceiver(Pool pool, ILogger logger, (string Promoted, string Incoming, string Receiving, string Standby) legacyPaths)
    {
        _pool = pool;
        _retention = new ReceiverRetention(pool, this);
        LoadState(legacyPaths.Promoted, legacyPaths.Incoming, legacyPaths.Receiving, legacyPaths.Standby, logger);
    }

    /// <summary>Names the exports of a snapshot (such a snapshot is not pruned: someone reads it).</summary>
    public Func<string, IReadOnlyList<string>> ExportsOfSnapshot { get; set; } = _ => [];

    /// <summary>
    /// Names the read-write NBD/iSCSI exports of a volume: a fail-back stream is refused while an
    /// application may be writing the volume it would roll back.
    /// </summary>
    public Func<string, IReadOnlyList<string>> WritableExports { get; set; } = _ => [];

    /// <summary>
    /// Told the volume whose newest replicated snapshot changed (a commit) or that stopped or started
    /// being a replica (promote, demote, accept): its read-only exports move to <see cref="StandbyImage"/>
    /// for new clients (ADR 0008).
    /// </summary>
    public Action<string> ImageChanged { get; set; } = _ => { };

    /// <summary>Whether NBD or iSCSI clients hold a volume, view or snapshot (a replicated snapshot served to them is not pruned).</summary>
    public Func<string, bool> HeldByClients { get; set; } = _ => false;

    /// <summary>
    /// Refuses (naming the clients) an operation that would change a volume's live image under
    /// attached clients: a fail-back into it, a seed scan, a demotion (ADR 0008).
    /// </summary>
    public Action<string, string> ThrowIfAttached { get; set; } = (_, _) => { };

    /// <summary>
    /// The snapshot read-only exports of <paramref name="volume"/> serve instead of its live image,
    /// or null: for a volume replication writes (a replica not promoted, or one half-received), its
    /// newest replicated snapshot; the live image changes with every commit and is torn during a transfer.
    /// </summary>
    public string? StandbyImage(string volume) =>
        WhyReadOnly(volume) is null ? null : NewestReplicated(volume)?.Address;

    /// <summary>Volumes replicated into this server: which partner sends each, from which of its volumes.</summary>
    public IReadOnlyList<IncomingReplicaDto> Incoming
    {
        get
        {
            lock (_incoming)
            {
                return [.. _incoming.Values.Select(WithPromoted)];
            }
        }
    }

    public IncomingReplicaDto? FindIncoming(string volume)
    {
        lock (_incoming)
        {
            return _incoming.TryGetValue(volume, out var record) ? WithPromoted(record) : null;
        }
    }

    /// <summary>Replica volumes promoted to primaries here: no partner may write into them any more.</summary>
    public IReadOnlyList<string> Promoted
    {
        get
        {
            lock (_promoted)
            {
                return [.. _promoted.Order(StringComparer.Ordinal)];
            }
        }
    }

    /// <summary>
    /// Makes a replica a writable primary (at the DR site, also with the primary unreachable): any
    /// half-received transfer is discarded so the volume is exactly its newest complete snapshot, and
    /// incoming replication into it is refused from now on. Returns that snapshot.
    /// </summary>
    public SnapshotInfo Promote(string volume)
    {
        var gate = _locks.GetOrAdd(volume, _ => new Lock());
        SnapshotInfo newest;
        lock (gate)
        {
            _pool.GetVolume(volume); // a missing volume: not found
            newest = NewestReplicated(volume)
                ?? throw new StorageException(StorageError.InvalidArgument, $"{volume} has no complete replicated snapshot yet; there is nothing consistent to promote");
            DiscardLeftovers(volume, replica: true);
            SetPromoted(volume, true);
            BumpGeneration(volume);
        }

        // A primary now: its read-only exports serve the live image to new clients.
        ImageChanged(volume);
        return newest;
    }

    /// <summary>
    /// The newest snapshot replication committed into <paramref name="volume"/>: the one the
    /// incoming record names (by id; by name for records written before ids were kept), never the
    /// newest by creation time — a snapshot taken by hand here, maybe of a half-applied transfer, is
    /// the administrator's. A volume with no record (a half-received one, a primary) falls back to
    /// its newest snapshot.
    /// </summary>
    public SnapshotInfo? NewestReplicated(string volume)
    {
        if (!_pool.TryGetVolume(volume, out _))
        {
            return null;
        }

        var snapshots = _pool.ListSnapshots(volume);
        IncomingReplicaDto? record;
        lock (_incoming)
        {
            record = _incoming.GetValueOrDefault(volume);
        }

        if (record?.LastSnapshotId is { } id && snapshots.FirstOrDefault(s => s.Id == id) is { } byId)
        {
            return byId;
        }

        if (record?.LastSnapshot is { } name && snapshots.FirstOrDefault(s => s.Name == name) is { } byName)
        {
            return byName;
        }

        return snapshots.MaxBy(s => s.CreatedAt);
    }

    /// <summary>The role generation of <paramref name="volume"/> here (0 for a volume that was never a replica).</summary>
    public long GenerationOf(string volume)
    {
        lock (_incoming)
        {
            return _incoming.TryGetValue(volume, out var record) ? record.Generation : 0;
        }
    }

    private void BumpGeneration(string volume)
    {
        lock (_incoming)
        {
            if (_incoming.TryGetValue(volume, out var record))
            {
                _incoming[volume] = record with { Generation = record.Generation + 1 };
                SaveIncoming(volume);
            }
        }
    }

    /// <summary>
    /// Refuses a stream or request for <paramref name="volume"/> from a partner at a lower role
    /// generation (a side that was promoted past it: its writes would roll back newer ones here).
    /// Checked for what may roll back or demote a volume (a reverse stream or scan, a demotion); an
    /// ordinary stream enters only a replica that is not promoted, which holds no writes of its own,
    /// and every stream leaves the higher generation recorded.
    /// </summary>
    public void CheckGeneration(string volume, string partner, long generation)
    {
        var ours = GenerationOf(volume);
        if (generation < ours)
        {
            throw new StaleGenerationException($"{partner} is at role generation {generation} of {volume}, this site at {ours}: {volume} was promoted here since {partner} last took a role in it, so its stream would undo newer writes; run 'tidemark replica demote {volume}' at {partner} (or delete that replica there)");
        }
    }

    // 503, not 409: the sender may well be retrying after a broken connection whose request this
    // server has not finished yet, and another attempt a moment later succeeds.
    private static StorageException TransferRunning(string volume) =>
        new(StorageError.Closed, $"a transfer into {volume} is already running; try again when it ends");

    /// <summary>Stands for the common snapshot of a fail-back scan when the sender no longer has the snapshot it was promoted from.</summary>
    public const string UnknownCommon = "?";


    /// <summary>
    /// Why <paramref name="volume"/> must not be exported read-write, or null: a replica that is not
    /// promoted is written by replication alone (a write there would make the DR copy differ from
    /// every source snapshot, or be discarded by the next sync).
    /// </summary>
    public string? WhyReadOnly(string volume)
    {
        if (!IsReplicaFrom(volume, null) && !_partial.ContainsKey(volume) && !_pending.ContainsKey(volume))
        {
            return null;
        }

        var newest = NewestReplicated(volume);
        var source = FindIncoming(volume) is { } record ? $" of {record.Partner}:{record.SourceVolume}" : "";
        return $"{volume} is a replica{source} and read-only until promoted; to test the DR copy, create a view of a replicated snapshot and export that ('tidemark view create {volume}@{newest?.Name ?? "SNAPSHOT"} --name {volume}-test'), or export it read-only (--read-only); 'tidemark replica promote {volume}' makes it a writable primary";
    }

    /// <summary>
    /// Makes a promoted volume a replica again (fail-back done at the other site): it accepts
    /// replication once more. Whatever it holds beyond its newest snapshot is kept as a snapshot, as
    /// a rollback keeps it, and the volume returns to that newest snapshot, which the other site has.
    /// Returns the kept snapshot, or null when there was nothing to keep.
    /// </summary>
    public SnapshotInfo? Demote(string volume, string? returnTo = null, long? generation = null)
    {
        var gate = _locks.GetOrAdd(volume, _ => new Lock());
        lock (gate)
        {
            if (!Promoted.Contains(volume))
            {
                throw new StorageException(StorageError.InvalidArgument, $"{volume} is not a promoted replica here; there is nothing to demote");
            }

            if (WritableExports(volume) is { Count: > 0 } exports)
            {
                throw new StorageException(StorageError.Busy, $"{volume} is exported read-write ({string.Join(", ", exports)}); stop the application and delete those exports before it becomes a replica again");
            }

            // Returning to the snapshot the other site has changes the live image under its readers.
            ThrowIfAttached(volume, $"demoting {volume} to a replica");

            // The snapshot the other site has: the last one sent back to it (fail-back), else the
            // newest one replicated here; never a snapshot someone took here by hand.
            var target = (returnTo is null ? null : _pool.ListSnapshots(volume).FirstOrDefault(s => s.Name == returnTo)) ?? NewestReplicated(volume)!;
            var kept = _pool.Diff(volume, target.Name, null).Count > 0 ? _pool.Rollback(volume, target.Name, keepCurrentState: true) : null;
            SetPromoted(volume, false);
            lock (_incoming)
            {
                if (_incoming.TryGetValue(volume, out var record))
                {
                    // What 'replica incoming' shows is the state the replica is in now, and the
                    // generation is the promoting side's, so this side's older streams are refused.
                    _incoming[volume] = record with { LastSnapshot = target.Name, LastSnapshotCreatedAt = target.CreatedAt, LastSnapshotId = target.Id, Generation = Math.Max(record.Generation, generation ?? 0) };
                    SaveIncoming(volume);
                }
            }

            ImageChanged(volume);
            return kept;
        }
    }

    private void SetPromoted(string volume, bool promoted)
    {
        lock (_promoted)
        {
            if (promoted == _promoted.Contains(volume))
            {
                return;
            }

            if (promoted)
            {
                _pool.Control.Put(PromotedKind, volume, new PromotedRecord(DateTimeOffset.UtcNow));
                _promoted.Add(volume);
            }
            else
            {
                _pool.Control.Delete(PromotedKind, volume);
                _promoted.Remove(volume);
            }
        }
    }

    private IncomingReplicaDto WithPromoted(IncomingReplicaDto record)
    {
        lock (_promoted)
        {
            return record with { Promoted = _promoted.Contains(record.Volume), StandbyExports = StandbyExportsOf(record.Volume) };
        }
    }

    /// <summary>The exports prepared for <paramref name="volume"/>, brought up when it is promoted (none: null).</summary>
    public IReadOnlyList<CreateExportRequest>? StandbyExportsOf(string volume)
    {
        lock (_standby)
        {
            return _standby.GetValueOrDefault(volume);
        }
    }

    /// <summary>
    /// Records the exports <paramref name="partner"/> prepares for its replica <paramref name="volume"/>
    /// here (replacing earlier ones; an empty list removes them). They must name that volume (or, for
    /// a group's iSCSI target, volumes replicated from the same partner) and are checked when they are
    /// brought up.
    /// </summary>
    public void SetStandbyExports(string volume, string partner, IReadOnlyList<CreateExportRequest> exports)
    {
        foreach (var export in exports)
        {
            if (export.Target != volume && !(export.AdditionalTargets ?? []).Contains(volume))
            {
                throw new StorageException(StorageError.InvalidArgument, $"a standby export for {volume} must export {volume}, not {export.Target}");
            }

            if (export.ChapSecret is not null || export.MutualChapSecret is not null)
            {
                throw new StorageException(StorageError.InvalidArgument, "standby exports carry no CHAP secrets; add CHAP at this site after promotion");
            }
        }

        if (FindIncoming(volume) is { } incoming && incoming.Partner != partner)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{volume} is replicated here from {incoming.Partner}, not {partner}");
        }

        lock (_standby)
        {
            if (exports.Count == 0)
            {
                _pool.Control.Delete(StandbyKind, volume);
                _standby.Remove(volume);
            }
            else
            {
                _pool.Control.Put(StandbyKind, volume, new StandbyRecord([.. exports.Select(StandbyExportRecord.From)]));
                _standby[volume] = exports;
            }
        }
    }

    /// <summary>
    /// The incoming record after <paramref name="snapshot"/> was committed into <paramref name="volume"/>:
    /// one more in the sequence, at the higher of both role generations. Pure: it is built inside the
    /// engine's commit (<see cref="CommitRecords"/>).
    /// </summary>
    private static IncomingReplicaDto NextIncoming(IncomingReplicaDto? before, string volume, string partner, string sourceVolume, SnapshotInfo snapshot, string? group, long generation) =>
        new(volume, partner, sourceVolume, snapshot.Name, snapshot.CreatedAt, DateTimeOffset.UtcNow, false, group, KeepLast: before?.KeepLast)
        {
            LastSnapshotId = snapshot.Id,
            Sequence = (before?.Sequence ?? 0) + 1,
            Generation = Math.Max(before?.Generation ?? 0, generation),
        };

    /// <summary>
    /// The control records of a replication commit, written in the same metadata batch as the
    /// snapshot they describe (ADR 0011): the replica's incoming record, and no resume offset left.
    /// </summary>
    private static ControlBatch CommitRecords(ControlBatch batch, IncomingReplicaDto record, bool reverse)
    {
        batch.Put(IncomingKind, record.Volume, IncomingRecord.From(record)).Delete(ReceivingKind, record.Volume);
        if (reverse)
        {
            // A fail-back makes a promoted volume a replica again, in the same commit.
            batch.Delete(PromotedKind, record.Volume);
        }

        return batch;
    }

    /// <summary>Takes a committed incoming record into memory (its records are durable already).</summary>
    private void Committed(IncomingReplicaDto record)
    {
        lock (_incoming)
        {
            // A retention set while the commit ran is kept (and saved again).
            var keepLast = _incoming.GetValueOrDefault(record.Volume)?.KeepLast;
            _incoming[record.Volume] = record with { KeepLast = keepLast };
            if (keepLast != record.KeepLast)
            {
                SaveIncoming(record.Volume);
            }
        }
    }

    public IReadOnlyList<RemoteSnapshotDto> Snapshots(string volume) =>
        _pool.TryGetVolume(volume, out _)
            ? [.. _pool.ListSnapshots(volume).Select(s => new RemoteSnapshotDto(s.Id, s.Name, s.CreatedAt))]
            : [];

    /// <summary>
    /// How much <paramref name="volume"/> changed after its snapshot <paramref name="snapshot"/> (a
    /// DR site asks before a fail-back: written here after the common snapshot is split brain).
    /// Costs the engine's diff, which follows what changed, not the volume size.
    /// </summary>
    public WrittenSinceDto WrittenSince(string volume, Guid snapshot)
    {
        var since = (_pool.TryGetVolume(volume, out _) ? _pool.FindSnapshotById(volume, snapshot) : null)
            ?? throw new StorageException(StorageError.NotFound, $"{volume} has no snapshot {snapshot} here");
        return new WrittenSinceDto(since.Name, _pool.Diff(volume, since.Name, null).Sum(r => r.LengthBytes));
    }

    public PartialReceiveDto? Partial(string volume) =>
        _pending.TryGetValue(volume, out var pending) ? new PartialReceiveDto(pending.Header.SnapshotId, pending.Header.SizeBytes, Complete: true)
        : _partial.TryGetValue(volume, out var p) ? p : null;

    /// <summary>
    /// Commits a replicated group: every member's stream for this group snapshot must be in (applied,
    /// verified, flushed); then all members' snapshots are created in one engine transaction, so the
    /// replica never holds one member's new state without the others'.
    /// </summary>
    public IReadOnlyList<SnapshotInfo> CommitGroup(string partner, GroupCommitRequest request)
    {
        if (request.Members.Count == 0)
        {
            throw new StorageException(StorageError.InvalidArgument, "a group commit needs its members");
        }

        var members = new List<(string Volume, string Name, Guid Id)>();
        var headers = new List<(string Volume, StreamImportResult Result)>();
        foreach (var member in request.Members)
        {
            if (!_pending.TryGetValue(member.Volume, out var pending) || pending.Group != request.Group || pending.Header.SnapshotId != member.SnapshotId)
            {
                throw new StorageException(StorageError.InvalidArgument, $"member {member.Volume} of group {request.Group} has not received snapshot {member.SnapshotId} completely; send it again");
            }

            members.Add((member.Volume, SnapshotStreamReader.UniqueName(_pool, member.Volume, pending.Header.SnapshotName), member.SnapshotId));
            headers.Add((member.Volume, pending.Result));
        }

        var before = headers.Select(h => FindIncoming(h.Volume)).ToList();
        var committed = new List<IncomingReplicaDto>();
        var snapshots = _pool.SnapshotVolumesTogether(members, $"{request.Group}/{members[0].Name}", cut =>
        {
            // The members' incoming records go in the same commit as their snapshots (ADR 0011).
            var batch = new ControlBatch();
            for (var i = 0; i < cut.Count; i++)
            {
                var (volume, result) = headers[i];
                var generation = _pending.TryGetValue(volume, out var pending) ? pending.Generation : 0;
                var record = NextIncoming(before[i], volume, partner, result.Header.Volume, cut[i], request.Group.Split('/')[0], generation);
                committed.Add(record);
                CommitRecords(batch, record, reverse: false);
            }

            return batch;
        });
        foreach (var record in committed)
        {
            Committed(record);
        }

        foreach (var (volume, result) in headers)
        {
            _pending.TryRemove(volume, out _);
            _retention.DropScanBase(volume, result.Header);
            ImageChanged(volume);
            _retention.Prune(volume);
        }

        return snapshots;
    }

    /// <summary>The members of a replicated group received here (for promoting it as one unit).</summary>
    public IReadOnlyList<string> GroupMembers(string group)
    {
        lock (_incoming)
        {
            return [.. _incoming.Values.Where(r => r.Group == group).Select(r => r.Volume)];
        }
    }

    /// <summary>
    /// Applies a stream from <paramref name="partner"/> to <paramref name="volume"/>. With
    /// <paramref name="reverse"/> (fail-back from a site that promoted its replica) the volume may be a
    /// primary here: it must not be exported read-write, it is rolled back to the stream's base
    /// (keeping what it held as a snapshot), and it becomes a replica of the partner.
    /// </summary>
    /// <remarks>
    /// A fail-back compared by hash scan (no snapshot in common) enters the scan's
    /// <c>pre-failback-...</c> base; the sender, which still has the common snapshot, names it in
    /// <paramref name="divergedAfter"/> when this site's copy differs from it in
    /// <paramref name="changedGranules"/> granules (-1: it cannot tell). The split-brain rule is then
    /// the same as with a shared snapshot: refused unless <paramref name="discardWrites"/>, and the
    /// scan base, which keeps those writes, is the kept state.
    /// </remarks>
    public StreamImportResult Receive(string volume, string partner, Stream body, long resumeOffset, bool reverse, CancellationToken cancellationToken, string? group = null, long generation = 0, bool discardWrites = false, string? divergedAfter = null, long changedGranules = 0)
    {
        var gate = _locks.GetOrAdd(volume, _ => new Lock());
        if (!gate.TryEnter())
        {
            throw TransferRunning(volume);
        }

        try
        {
            if (reverse)
            {
                CheckGeneration(volume, partner, generation);
            }

            CheckAccepts(volume, reverse);
            if (reverse && divergedAfter is not null && !discardWrites)
            {
                throw SplitBrain(volume, partner, divergedAfter, changedGranules);
            }

            // Read-only clients of a replica read its newest replicated snapshot; a client on the
            // live image (attached before the volume became a replica, or the home volume of a
            // fail-back) would see it change, or torn mid-transfer.
            ThrowIfAttached(volume, reverse ? $"failing back from {partner} into {volume}" : $"replicating from {partner} into {volume}");

            if (resumeOffset == 0)
            {
                // A fail-back keeps the volume's own changes (the import rolls back keeping them);
                // only a half-applied earlier attempt of it is discarded.
                if (!reverse || _partial.ContainsKey(volume) || _pending.ContainsKey(volume))
                {
                    DiscardLeftovers(volume, IsReplicaFrom(volume, partner));
                }
            }
            else if (Partial(volume) is not { Complete: false } partial || partial.AppliedOffset < resumeOffset || !_pool.TryGetVolume(volume, out _))
            {
                // Resuming before the durable offset is fine (records of the same snapshot rewrite
                // the same blocks); beyond it would skip blocks never applied.
                throw new StorageException(StorageError.InvalidArgument, $"there is nothing to resume at offset {resumeOffset} in {volume}; start the transfer over");
            }

            // Every few seconds: flush what was applied, then record how far that is, so even a
            // kill -9 of this server lets the sender resume there instead of from the start.
            Guid? snapshotId = null;
            IncomingReplicaDto? committed = null;
            var before = FindIncoming(volume);
            var savedAt = Environment.TickCount64;
            void SaveProgress(long applied)
            {
                if (snapshotId is not { } id || Environment.TickCount64 - savedAt < (long)SaveProgressEvery.TotalMilliseconds)
                {
                    return;
                }

                _pool.GetVolume(volume).Flush();
                _partial[volume] = new PartialReceiveDto(id, applied);
                SavePartial(volume);
                savedAt = Environment.TickCount64;
            }

            try
            {
                var result = SnapshotStreamReader.Import(_pool, body, new StreamImportOptions
                {
                    Volume = volume,
                    KeepPartial = true,
                    Resume = resumeOffset > 0,
                    RollbackToBase = reverse && discardWrites,
                    DeferSnapshot = group is not null,
                    HeaderRead = header =>
                    {
                        if (resumeOffset > 0 && _partial.TryGetValue(volume, out var resuming) && resuming.SnapshotId != header.SnapshotId)
                        {
                            throw new StorageException(StorageError.InvalidArgument, $"the stream resumes snapshot {header.SnapshotName} ({header.SnapshotId}) but {volume} holds part of {resuming.SnapshotId}; start the transfer over");
                        }

                        snapshotId = header.SnapshotId;
                        if (resumeOffset == 0 && !header.IsIncremental)
                        {
                            // The volume was just made: recorded at once, so whatever happens next
                            // (even a kill -9) it is known as a half-received replica, not someone's data.
                            _partial[volume] = new PartialReceiveDto(header.SnapshotId, 0);
                            SavePartial(volume);
                        }
                    },
                    Progress = SaveProgress,
                    Bookkeeping = (header, snapshot) => CommitRecords(new ControlBatch(), committed = NextIncoming(before, volume, partner, header.Volume, snapshot, null, generation), reverse),
                }, cancellationToken);

                // A commit deleted the resume record already; a group member's waits for its group.
                if (_partial.TryRemove(volume, out _) && group is not null)
                {
                    SavePartial(volume);
                }

                if (reverse && divergedAfter is not null && result.KeptState is null && result.Header.BaseSnapshotId is { } scanBaseId && _pool.FindSnapshotById(volume, scanBaseId) is { } scanBase)
                {
                    // The scan base holds this site's writes that the fail-back just overwrote.
                    result = result with { KeptState = scanBase };
                }

                if (reverse)
                {
                    SetPromoted(volume, false);
                }

                if (group is not null)
                {
                    _pending[volume] = new PendingMember(group, result.Header, result, generation);
                    return result;
                }

                Committed(committed!);
                _retention.DropScanBase(volume, result.Header);
                ImageChanged(volume);
                _retention.Prune(volume);
                return result;
            }
            catch (BaseChangedException ex) when (reverse && ex.BaseSnapshot is { } common)
            {
                // Split brain: this site also wrote after the snapshot both sides share. Resolving it
                // discards one side's writes, so only when the administrator says which.
                throw SplitBrain(volume, partner, common, null, ex);
            }
            catch (StreamImportException ex)
            {
                var id = ex.SnapshotId;
                if (ex.AppliedOffset > 0 && id is { } failedId)
                {
                    _partial[volume] = new PartialReceiveDto(failedId, ex.AppliedOffset);
                    SavePartial(volume);
                }

                throw;
            }
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>
    /// A fail-back refused because this site wrote after <paramref name="common"/> (with a shared
    /// snapshot: found by the engine here; with a hash scan: <paramref name="changedGranules"/>
    /// granules found by the sender, -1 when it no longer has the common snapshot to compare with).
    /// </summary>
    private static SplitBrainException SplitBrain(string volume, string partner, string common, long? changedGranules, Exception? inner = null)
    {
        var (what, kept) = changedGranules switch
        {
            null => ($"{volume} was written here after {common}, the newest snapshot both sites share,", "pre-rollback"),
            < 0 => ($"{volume} here cannot be compared with the snapshot {partner} was promoted from (it has none left), so it may hold writes made after it,", "pre-failback"),
            { } n => ($"{volume} was written here after {common}, the last snapshot both sites shared ({n:N0} granules of 64 KiB differ from it; no longer kept here),", "pre-failback"),
        };
        var message = $"split brain: {what} and {partner} wrote to its copy too; failing back would revert this site's writes (they would be kept as a {kept}-... snapshot here); to do that, run 'tidemark replica reverse {volume} --discard-writes-at home' at {partner}";
        return inner is null ? new SplitBrainException(message) : new SplitBrainException(message, inner);
    }


    // A fresh transfer starts from the replica's newest complete snapshot: a half-made volume (no
    // snapshot yet) is deleted, a half-applied increment rolled back without keeping it.
    /// <summary>
    /// Returns a replica to its newest complete snapshot: a half-applied transfer is rolled back, a
    /// half-made volume (its first transfer broke off, no snapshot yet) deleted. Only what this server
    /// knows it received is touched: a volume that is not a replica here (a seed, someone's data) is
    /// left alone, and a stream into it is refused or compared by hash scan instead.
    /// </summary>
    private void DiscardLeftovers(string volume, bool replica)
    {
        var had = _partial.TryRemove(volume, out _);
        if (had)
        {
            SavePartial(volume);
        }

        had |= _pending.TryRemove(volume, out _);
        if (!_pool.TryGetVolume(volume, out _) || !(had || replica))
        {
            return;
        }

        if (NewestReplicated(volume) is not { } newest)
        {
            if (had)
            {
                _pool.DeleteVolume(volume);
            }

            return;
        }

        if (_pool.Diff(volume, newest.Name, null).Count > 0)
        {
            _pool.Rollback(volume, newest.Name, keepCurrentState: false);
        }
    }

    /// <summary>
    /// A fail-back may enter a volume nobody writes (no read-write export); ordinary replication may
    /// not enter a replica promoted here.
    /// </summary>
    private void CheckAccepts(string volume, bool reverse)
    {
        if (reverse)
        {
            if (WritableExports(volume) is { Count: > 0 } exports)
            {
                throw new StorageException(StorageError.Busy, $"{volume} is exported read-write here ({string.Join(", ", exports)}); stop the application and delete those exports before failing back into it");
            }

            return;
        }

        lock (_promoted)
        {
            if (_promoted.Contains(volume))
            {
                throw new StorageException(StorageError.ReadOnly, $"{volume} was promoted to a primary at this site; it no longer accepts replication (reverse the direction, or replicate into another volume)");
            }
        }
    }

    /// <summary>The volume is a (not promoted) replica that <paramref name="partner"/> sends here.</summary>
    private bool IsReplicaFrom(string volume, string? partner)
    {
        lock (_incoming)
        {
            if (!_incoming.TryGetValue(volume, out var record) || (partner is not null && record.Partner != partner))
            {
                return false;
            }
        }

        lock (_promoted)
        {
            return !_promoted.Contains(volume);
        }
    }

    private sealed record PendingMember(string Group, StreamHeader Header, StreamImportResult Result, long Generation);
}
