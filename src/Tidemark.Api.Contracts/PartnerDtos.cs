namespace Tidemark.Api;

/// <summary>This server as a replication partner sees it: the fingerprint to pin and where to connect.</summary>
public sealed record IdentityDto(string Fingerprint, string? ReplicationAddress, Guid PoolId);

/// <summary>A paired server: replication goes only to and from partners, each pinned by certificate fingerprint.</summary>
public sealed record PartnerDto(string Name, string Address, string Fingerprint, DateTimeOffset AddedAt);

public sealed record AddPartnerRequest(string Name, string Address, string Fingerprint);

/// <summary>What a partner answered over the replication link.</summary>
public sealed record PartnerHelloDto(string Fingerprint, Guid PoolId, string Version, DateTimeOffset Time);

/// <summary>What an imported snapshot stream made: the snapshot, and how much the stream carried.</summary>
public sealed record StreamImportDto(SnapshotDto Snapshot, bool Incremental, long Records, long DataBytes, long ZeroBytes, SnapshotDto? KeptState = null);

/// <summary>
/// A group member's stream is in and waits for the group's commit (the 202 answer): the snapshot that
/// now keeps the writes a fail-back discarded at the receiver, when it discarded any.
/// </summary>
public sealed record GroupMemberReceivedDto(SnapshotDto? KeptState);

/// <summary>A snapshot as a partner lists it: identity is what matters across sites.</summary>
public sealed record RemoteSnapshotDto(Guid Id, string Name, DateTimeOffset CreatedAt);

/// <summary>
/// A receive that broke off: the snapshot it was for and how far it durably got; or, for a member of a
/// replicated group, <see cref="Complete"/>: the whole stream is in and waits for the group's commit.
/// </summary>
public sealed record PartialReceiveDto(Guid SnapshotId, long AppliedOffset, bool Complete = false);

/// <summary>One member of a replicated group's commit: its volume at the receiver and the snapshot id its stream carried.</summary>
public sealed record GroupMemberCommitDto(string Volume, Guid SnapshotId);

/// <summary>Commits a replicated group's members' snapshots together at the receiver.</summary>
public sealed record GroupCommitRequest(string Group, IReadOnlyList<GroupMemberCommitDto> Members, bool Reverse = false);

/// <summary>
/// A volume replicated to a partner. <see cref="State"/>: "active", "suspended" (the partner fails
/// back into it; <see cref="SuspendedReason"/> says what resumes it), "reverse" (a promoted replica
/// sent back to its source) or "promoted" (shown at the DR site for a promoted replica not sent back
/// yet). Before a fail-back's first sync, <see cref="PartnerWrites"/> says whether the site it goes
/// back to wrote after the newest snapshot both share (split brain: the reverse needs
/// --discard-writes-at home), asked over the link when shown; "unknown, ... unreachable" when it
/// did not answer in time. <see cref="Hosts"/>: agents quiesced around each cycle's snapshot, with
/// <see cref="Fallback"/> ("crash" or "skip") when one cannot; <see cref="LastConsistency"/>: how
/// consistent <see cref="LastSnapshot"/> is at this site ("crash" when cut without agents; ADR 0015).
/// </summary>
public sealed record ReplicaDto(
    string Volume,
    string Partner,
    string RemoteVolume,
    string? LastSnapshot,
    DateTimeOffset? LastSyncAt,
    double? LagSeconds,
    long BytesSent,
    long LastBytesSent,
    long LastRangeBytes,
    double? LastDurationSeconds,
    int Retries,
    string? LastError,
    string? Every = null,
    DateTimeOffset? NextSyncAt = null,
    string State = "active",
    string? SuspendedReason = null,
    string? Bandwidth = null,
    IReadOnlyList<string>? GroupMembers = null,
    bool AfterPolicySnapshots = false,
    bool Seed = false,
    long LastScannedBytes = 0,
    IReadOnlyList<StandbyExportDto>? StandbyExports = null,
    double? LastCompressionRatio = null,
    ReplicaSyncProgressDto? Syncing = null,
    int CompressionLevel = 3,
    string? DiscardedWrites = null,
    string? PartnerWrites = null,
    IReadOnlyList<string>? Hosts = null,
    string? Fallback = null,
    string? LastConsistency = null);

/// <summary>The bytes of ranges a volume changed after one of its snapshots (the partner link's split-brain query before a fail-back).</summary>
public sealed record WrittenSinceDto(string Snapshot, long ChangedBytes);

/// <summary>
/// A sync under way: bytes of changed ranges covered of the total known from the diff (or scanned and
/// then found differing, for a hash scan), and the time left at this run's rate (what an interrupted
/// attempt already sent does not count towards the rate).
/// </summary>
public sealed record ReplicaSyncProgressDto(DateTimeOffset StartedAt, long Done, long? Total, double? Percent, double? EtaSeconds, string? Retrying = null);

/// <summary>
/// An export prepared at the partner for the replica, brought up there when the replica is promoted
/// (also with this site unreachable). <see cref="Protocol"/> "nbd" or "iscsi"; <see cref="Name"/>
/// defaults to the replica volume's name; <see cref="Iqn"/> and <see cref="AllowedInitiators"/> are
/// iSCSI's (the initiators of the standby hosts). For a group, NBD exports one export per member
/// (NAME-MEMBER, or the member's name) and iSCSI one target with the members as LUNs.
/// </summary>
public sealed record StandbyExportDto(string Protocol, string? Name = null, string? Iqn = null, IReadOnlyList<string>? AllowedInitiators = null);

/// <param name="Every">Sync automatically this often ("30s", "5m", "1h"); null: only on request.</param>
/// <param name="Bandwidth">At most this many bytes per second on the link ("20M"); null: no limit.</param>
/// <param name="AfterPolicySnapshots">Sync after each snapshot a policy takes of the volume or group.</param>
/// <param name="Seed">
/// The partner's volume already holds a copy of this one (an imported stream, a restored backup, a disk
/// copy): the first sync compares the two by a hash scan and sends only the blocks that differ.
/// </param>
/// <param name="StandbyExports">Exports prepared at the partner, brought up there on promotion.</param>
/// <param name="CompressionLevel">zstd level 1-22 of the streams, 0 for none; null: 3.</param>
/// <param name="Hosts">Hosts ('tidemark host list') whose agents quiesce the application around each cycle's snapshot; null or empty: none (crash-consistent).</param>
/// <param name="Fallback">When an agent cannot quiesce: "crash" (send the snapshot anyway, labelled crash; the default) or "skip" (no cycle; the next one tries again).</param>
public sealed record CreateReplicaRequest(string Volume, string Partner, string? RemoteVolume = null, string? Every = null, string? Bandwidth = null, bool AfterPolicySnapshots = false, bool Seed = false, IReadOnlyList<StandbyExportDto>? StandbyExports = null, int? CompressionLevel = null, IReadOnlyList<string>? Hosts = null, string? Fallback = null);

/// <summary>
/// The receiving side's answer to a hash scan: the snapshot of its volume the scan compares against
/// (and the stream that follows builds on), with the volume's size and block size.
/// </summary>
public sealed record ScanBaseDto(Guid SnapshotId, string SnapshotName, long SizeBytes, int LogicalBlockSizeBytes);

/// <summary>Changes a replica's schedule, bandwidth limit, standby exports or agents; null leaves a field as it is, "off" (an empty list) clears it.</summary>
public sealed record UpdateReplicaRequest(string? Every = null, string? Bandwidth = null, IReadOnlyList<StandbyExportDto>? StandbyExports = null, int? CompressionLevel = null, IReadOnlyList<string>? Hosts = null, string? Fallback = null);

/// <summary>
/// A volume replicated into this server: <see cref="Partner"/> sends it from its volume
/// <see cref="SourceVolume"/>; <see cref="Promoted"/> once it was made a primary here.
/// <see cref="LastSnapshotId"/> is the newest snapshot replication committed (<see cref="Sequence"/>
/// counts the commits): the replica's state is keyed by it, never by snapshot times, so a snapshot
/// taken by hand at this site is never mistaken for a replicated one. <see cref="Generation"/> is the
/// volume's role generation: every promotion bumps it, and a stream or request from a lower one is refused.
/// </summary>
public sealed record IncomingReplicaDto(
    string Volume,
    string Partner,
    string SourceVolume,
    string? LastSnapshot,
    DateTimeOffset? LastSnapshotCreatedAt,
    DateTimeOffset? LastReceivedAt,
    bool Promoted,
    string? Group = null,
    IReadOnlyList<CreateExportRequest>? StandbyExports = null,
    int? KeepLast = null,
    Guid? LastSnapshotId = null,
    long Sequence = 0,
    long Generation = 0);

/// <summary>How many replicated snapshots a replica keeps at this site (the newest always stays: it is the base of the next sync).</summary>
public sealed record ReplicaRetentionRequest(int KeepLast)
{
    /// <summary>Replicated snapshots a replica keeps unless told otherwise.</summary>
    public const int DefaultKeepLast = 32;
}

/// <summary>What a promotion did: the snapshot the volume now starts from, and for a fail-back what happened at the other site.</summary>
public sealed record PromoteResultDto(SnapshotDto Snapshot, string? Note);

/// <summary>
/// At the receiving site: offers an existing volume as the target of <see cref="Partner"/>'s replica
/// (of its volume <see cref="SourceVolume"/>, the same name when null) before it is seeded over.
/// </summary>
public sealed record AcceptReplicaRequest(string Partner, string? SourceVolume = null);

/// <summary>An accepted replica target: the record, and the snapshot keeping what the volume held.</summary>
public sealed record AcceptReplicaResultDto(IncomingReplicaDto Replica, SnapshotDto KeptState);

/// <summary>
/// A demotion: <see cref="KeptState"/> holds what the volume had beyond its newest snapshot, if
/// anything; for a group, <see cref="Volumes"/> are the members demoted and <see cref="KeptStates"/>
/// every member's kept state.
/// </summary>
public sealed record DemoteResultDto(SnapshotDto? KeptState, IReadOnlyList<string>? Volumes = null, IReadOnlyList<SnapshotDto>? KeptStates = null);
