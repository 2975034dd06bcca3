using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;

namespace Tidemark.Replication;

/// <summary>
/// The receiving end of replication (on the partner-only listener), as the server sees it: it
/// reaches the server through the delegates below and is made of <see cref="StreamStaging"/> (an
/// incoming stream applied to the live replica volume, resumable), <see cref="ReplicaCommit"/> (the
/// replica's new snapshot and its bookkeeping in one engine transaction), <see cref="ReceiverBook"/>
/// (the records: incoming replicas, promotions, standby exports, resume offsets) and
/// <see cref="ReceiverRetention"/>; hash scans and a seed's consent are in ReplicaReceiver.Scan.cs.
/// Here: roles (promote, demote), what may be exported, and what the partner may ask.
/// </summary>
public sealed partial class ReplicaReceiver
{
    private readonly Pool _pool;
    private readonly ReceiverBook _book;
    private readonly ReceiverRetention _retention;
    private readonly ReplicaCommit _commit;
    private readonly StreamStaging _staging;

    /// <summary>Names of the snapshots a hash scan compares against: of a seed, and of a volume failed back into.</summary>
    public const string ScanBasePrefix = "hashscan-";
    public const string FailBackBasePrefix = "pre-failback-";

    /// <summary>Name of the snapshot that keeps what a volume held when it was accepted as a replica target.</summary>
    public const string AcceptedPrefix = "pre-seed-";

    /// <summary>Stands for the common snapshot of a fail-back scan when the sender no longer has the snapshot it was promoted from.</summary>
    public const string UnknownCommon = "?";

    /// <summary>A transfer that runs records how far it durably got at least this often (and at its end or failure).</summary>
    public static readonly TimeSpan SaveProgressEvery = TimeSpan.FromSeconds(2);

    /// <inheritdoc cref="ReceiverBook.IncomingKind"/>
    public static ControlKind<IncomingRecord> IncomingKind => ReceiverBook.IncomingKind;

    /// <inheritdoc cref="ReceiverBook.ReceivingKind"/>
    public static ControlKind<ReceivingRecord> ReceivingKind => ReceiverBook.ReceivingKind;

    /// <inheritdoc cref="ReceiverBook.StandbyKind"/>
    public static ControlKind<StandbyRecord> StandbyKind => ReceiverBook.StandbyKind;

    /// <inheritdoc cref="ReceiverBook.PromotedKind"/>
    public static ControlKind<PromotedRecord> PromotedKind => ReceiverBook.PromotedKind;

    /// <param name="legacyPaths">DATA/promoted.json, incoming.json, receiving.json and standby.json of older versions: imported into the pool, then renamed NAME.migrated.</param>
    public ReplicaReceiver(Pool pool, ILogger logger, (string Promoted, string Incoming, string Receiving, string Standby) legacyPaths)
    {
        _pool = pool;
        _book = new ReceiverBook(pool, logger, legacyPaths);
        _retention = new ReceiverRetention(pool, this);
        _commit = new ReplicaCommit(pool, _book, _retention, this);
        _staging = new StreamStaging(pool, _book, _commit, this);
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

    /// <summary>
    /// Crash-test fault points of the commit ("replica.commit": inside the engine's transaction, before
    /// its batch is written; "replica.committed": once it is durable, before the records in memory
    /// and the answer). The server kills itself at one when told to by TIDEMARK_FAULT_POINT.
    /// </summary>
    public Action<string> FaultPoint { get; set; } = _ => { };

    internal void CommitFault(string point) => FaultPoint(point);

    /// <summary>Volumes replicated into this server: which partner sends each, from which of its volumes.</summary>
    public IReadOnlyList<IncomingReplicaDto> Incoming => _book.Incoming;

    public IncomingReplicaDto? FindIncoming(string volume) => _book.FindIncoming(volume);

    /// <summary>Replica volumes promoted to primaries here: no partner may write into them any more.</summary>
    public IReadOnlyList<string> Promoted => _book.Promoted;

    /// <summary>The members of a replicated group received here (for promoting it as one unit).</summary>
    public IReadOnlyList<string> GroupMembers(string group) => _book.GroupMembers(group);

    /// <summary>The exports prepared for <paramref name="volume"/>, brought up when it is promoted (none: null).</summary>
    public IReadOnlyList<CreateExportRequest>? StandbyExportsOf(string volume) => _book.StandbyExportsOf(volume);

    /// <summary>
    /// The newest snapshot replication committed into <paramref name="volume"/>: the one the
    /// incoming record names (by id; by name for records written before ids were kept), never the
    /// newest by creation time — a snapshot taken by hand here, maybe of a half-applied transfer, is
    /// the administrator's. A volume with no record (a half-received one, a primary) falls back to
    /// its newest snapshot.
    /// </summary>
    public SnapshotInfo? NewestReplicated(string volume) => _book.NewestReplicated(volume);

    /// <summary>The role generation of <paramref name="volume"/> here (0 for a volume that was never a replica).</summary>
    public long GenerationOf(string volume) => _book.GenerationOf(volume);

    /// <summary>What an interrupted transfer into <paramref name="volume"/> holds (a group member's: complete, waiting), or null.</summary>
    public PartialReceiveDto? Partial(string volume) => _book.Partial(volume);

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

    /// <summary>
    /// Applies a stream from <paramref name="partner"/> to <paramref name="volume"/> and commits it
    /// (a group member's waits for <see cref="CommitGroup"/>). With <paramref name="reverse"/>
    /// (fail-back from a site that promoted its replica) the volume may be a primary here: it must
    /// not be exported read-write, it is rolled back to the stream's base (keeping what it held as a
    /// snapshot), and it becomes a replica of the partner.
    /// </summary>
    /// <remarks>
    /// A fail-back compared by hash scan (no snapshot in common) enters the scan's
    /// <c>pre-failback-...</c> base; the sender, which still has the common snapshot, names it in
    /// <paramref name="divergedAfter"/> when this site's copy differs from it in
    /// <paramref name="changedGranules"/> granules (-1: it cannot tell). The split-brain rule is then
    /// the same as with a shared snapshot: refused unless <paramref name="discardWrites"/>, and the
    /// scan base, which keeps those writes, is the kept state.
    /// </remarks>
    public StreamImportResult Receive(string volume, string partner, Stream body, long resumeOffset, bool reverse, CancellationToken cancellationToken, string? group = null, long generation = 0, bool discardWrites = false, string? divergedAfter = null, long changedGranules = 0) =>
        _staging.Receive(volume, partner, body, resumeOffset, reverse, group, generation, discardWrites, divergedAfter, changedGranules, cancellationToken);

    /// <summary>
    /// Commits a replicated group: every member's stream for this group snapshot must be in (applied,
    /// verified, flushed); then all members' snapshots are created in one engine transaction, so the
    /// replica never holds one member's new state without the others'.
    /// </summary>
    public IReadOnlyList<SnapshotInfo> CommitGroup(string partner, GroupCommitRequest request) => _commit.CommitGroup(partner, request);

    /// <summary>
    /// Makes a replica a writable primary (at the DR site, also with the primary unreachable): any
    /// half-received transfer is discarded so the volume is exactly its newest complete snapshot, and
    /// incoming replication into it is refused from now on. Returns that snapshot.
    /// </summary>
    public SnapshotInfo Promote(string volume)
    {
        SnapshotInfo newest;
        lock (_book.Gate(volume))
        {
            _pool.GetVolume(volume); // a missing volume: not found
            newest = NewestReplicated(volume)
                ?? throw new StorageException(StorageError.InvalidArgument, $"{volume} has no complete replicated snapshot yet; there is nothing consistent to promote");
            _staging.DiscardLeftovers(volume, replica: true);
            _book.SetPromoted(volume, true);
            _book.BumpGeneration(volume);
        }

        // A primary now: its read-only exports serve the live image to new clients.
        ImageChanged(volume);
        return newest;
    }

    /// <summary>
    /// Why <paramref name="volume"/> must not be exported read-write, or null: a replica that is not
    /// promoted is written by replication alone (a write there would make the DR copy differ from
    /// every source snapshot, or be discarded by the next sync).
    /// </summary>
    public string? WhyReadOnly(string volume)
    {
        if (!_book.IsReplicaFrom(volume, null) && !_book.HasLeftovers(volume))
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
        lock (_book.Gate(volume))
        {
            if (!_book.IsPromoted(volume))
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
            _book.SetPromoted(volume, false);
            _book.ReturnedTo(volume, target, generation);
            ImageChanged(volume);
            return kept;
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

        _book.SetStandby(volume, exports);
    }

    /// <summary>
    /// Sets how many replicated snapshots <paramref name="name"/> (a replica, or every member of a
    /// replicated group) keeps here, and prunes to it now.
    /// </summary>
    public IReadOnlyList<IncomingReplicaDto> SetRetention(string name, int keepLast)
    {
        if (keepLast < 1)
        {
            throw new StorageException(StorageError.InvalidArgument, $"a replica keeps at least its newest snapshot (--keep-last 1 or more), not {keepLast}");
        }

        IReadOnlyList<string> volumes = FindIncoming(name) is not null ? [name] : GroupMembers(name);
        if (volumes.Count == 0)
        {
            throw new StorageException(StorageError.NotFound, $"{name} is not a replica (or replicated group) received by this server; 'tidemark replica incoming' lists them");
        }

        _book.SetKeepLast(volumes, keepLast);
        foreach (var volume in volumes)
        {
            _retention.Prune(volume);
        }

        return [.. volumes.Select(v => FindIncoming(v)!)];
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
}
