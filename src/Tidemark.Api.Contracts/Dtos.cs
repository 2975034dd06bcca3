namespace Tidemark.Api;

// REST resources of /api/v1. Sizes are bytes; times are UTC ISO 8601; kinds are lower-case words.
// Field names are part of the API: add fields, never rename or remove them.

public sealed record StoreDto(int Index, string Path, string Kind, long CapacityBytes);

public sealed record PoolDto(
    Guid Id,
    string Directory,
    long CapacityBytes,
    long UsedBytes,
    long FreeBytes,
    IReadOnlyList<StoreDto> Stores,
    int Volumes,
    int Snapshots);

/// <param name="Path">A file to create (relative: under the server's data directory) or a block device.</param>
/// <param name="Force">Use a device even though it holds a file system, partition table or RAID/LVM signature.</param>
public sealed record AddStoreRequest(string Path, long CapacityBytes, bool Force = false);

/// <summary>A volume or a view (<see cref="Kind"/> "volume" or "view"; a view has an <see cref="Origin"/>).</summary>
public sealed record VolumeDto(
    Guid Id,
    string Name,
    string Kind,
    string? Origin,
    long SizeBytes,
    int LogicalBlockSizeBytes,
    DateTimeOffset CreatedAt,
    int Snapshots,
    IReadOnlyList<string> Exports,
    long? AllocatedBytes = null);

public sealed record CreateVolumeRequest(string Name, long SizeBytes, int LogicalBlockSizeBytes = 512);

public sealed record ResizeVolumeRequest(long SizeBytes);

/// <summary><see cref="Force"/> ends the NBD connections and iSCSI sessions attached to the volume first; without it they make the rollback refuse.</summary>
public sealed record RollbackRequest(string Snapshot, bool Force = false);

/// <summary>
/// What a rollback did: the volume as it is now, the snapshot that keeps the image before it and the
/// client sessions a forced rollback ended.
/// </summary>
public sealed record RollbackResult(VolumeDto Volume, SnapshotDto? PreRollbackSnapshot, IReadOnlyList<ClientSessionDto>? EndedSessions = null);

/// <summary>A client attached to a volume, view or snapshot: "nbd" or "iscsi", its address, the iSCSI initiator name.</summary>
public sealed record ClientSessionDto(string Protocol, string Client, string? Initiator, string Target);

/// <summary>
/// A snapshot. <see cref="Held"/>: it cannot be deleted now, because of an indefinite hold
/// (<see cref="HeldUntilReleased"/>) or a dated hold that has not expired (<see cref="HoldUntil"/>).
/// </summary>
public sealed record SnapshotDto(
    string Address,
    string Volume,
    string Name,
    DateTimeOffset CreatedAt,
    long SizeBytes,
    bool Held,
    bool HeldUntilReleased,
    DateTimeOffset? HoldUntil,
    string? HoldReason,
    string? GroupSnapshot,
    Guid? Id = null,
    string? Consistency = null,
    SnapshotVerificationDto? Verification = null);

/// <summary>
/// <see cref="Hosts"/>: agents to quiesce around the cut (ADR 0015); <see cref="Fallback"/> says what
/// happens when one cannot: "skip" (the default: no snapshot, an error) or "crash" (taken anyway, labelled crash).
/// </summary>
public sealed record CreateSnapshotRequest(string? Name = null, IReadOnlyList<string>? Hosts = null, string? Fallback = null);

/// <summary>Without <see cref="Until"/> the hold lasts until released; with it, until that time and no shorter.</summary>
public sealed record HoldRequest(DateTimeOffset? Until = null, string? Reason = null);

public sealed record SnapshotUsageDto(string Address, long UniqueBytes, long SharedBytes);

/// <summary>
/// <see cref="Purpose"/>: absent for a view of one's own; <see cref="RecoveryPurpose"/> for a
/// recovery's throwaway view, which its recovery deletes, and which the server deletes (with its
/// exports) at its next start when a stop interrupted the recovery.
/// </summary>
public sealed record CreateViewRequest(string Snapshot, string Name, string? Purpose = null)
{
    public const string RecoveryPurpose = "recovery";
}

public sealed record GroupDto(string Name, IReadOnlyList<string> Volumes, DateTimeOffset CreatedAt);

public sealed record CreateGroupRequest(string Name, IReadOnlyList<string> Volumes);

public sealed record ChangedRangeDto(long OffsetBytes, long LengthBytes);

/// <summary>
/// One page of the ranges that differ between snapshot <see cref="From"/> and <see cref="To"/> (null:
/// the live image). <see cref="NextOffset"/> is null on the last page.
/// </summary>
public sealed record DiffPageDto(
    string Volume,
    string From,
    string? To,
    int Offset,
    int TotalRanges,
    long TotalChangedBytes,
    IReadOnlyList<ChangedRangeDto> Ranges,
    int? NextOffset);

/// <summary>
/// An export: <see cref="Target"/> is a volume or view name (read-write unless <see cref="ReadOnly"/>)
/// or a snapshot address VOLUME@SNAPSHOT (always read-only). An iSCSI export is a target
/// <see cref="Iqn"/> whose <see cref="Luns"/> serve one such target each (LUN 0 is <see cref="Target"/>);
/// <see cref="AllowedInitiators"/> empty admits any initiator. CHAP secrets are never returned. An NBD
/// export has <see cref="LocalUrl"/> (nbd+unix) as well when the server listens on a Unix socket.
/// </summary>
public sealed record ExportDto(
    string Name,
    string Protocol,
    string Target,
    bool ReadOnly,
    string State,
    string? Problem,
    string? Url,
    string? Iqn = null,
    IReadOnlyList<ExportLunDto>? Luns = null,
    IReadOnlyList<string>? AllowedInitiators = null,
    string? ChapUser = null,
    string? MutualChapUser = null,
    bool TlsRequired = false,
    string? LocalUrl = null);

/// <summary>One LUN of an iSCSI export; <see cref="Url"/> is null while the server runs without iSCSI.</summary>
public sealed record ExportLunDto(int Lun, string Target, bool ReadOnly, string? Url);

/// <summary>
/// Creates an export. <see cref="Protocol"/> "nbd" or "iscsi". The other fields are iSCSI only:
/// <see cref="AdditionalTargets"/> become LUN 1, 2, ... (LUN 0 is <see cref="Target"/>); <see cref="Iqn"/>
/// defaults to iqn.2026-11.dev.tidemark:NAME; <see cref="AllowedInitiators"/> empty or null admits any
/// initiator; CHAP needs a user and a secret of 12 to 255 characters, mutual CHAP needs CHAP.
/// </summary>
public sealed record CreateExportRequest(
    string Target,
    string? Name = null,
    string Protocol = "nbd",
    bool ReadOnly = false,
    IReadOnlyList<string>? AdditionalTargets = null,
    string? Iqn = null,
    IReadOnlyList<string>? AllowedInitiators = null,
    string? ChapUser = null,
    string? ChapSecret = null,
    string? MutualChapUser = null,
    string? MutualChapSecret = null,
    bool TlsRequired = false);

public sealed record VerifyDto(bool Clean, IReadOnlyList<string> Problems, long ReferencedBytes, long LiveMappedBlocks, long HistoryRecords, long ControlRecords);

/// <summary>RFC 7807 problem details as the server sends them; <see cref="Code"/> is stable (kebab-case).</summary>
public sealed record ProblemDto(string? Type, string? Title, int? Status, string? Detail, string? Code);

/// <summary>DATA/server.json: where the running server listens, for the CLI to find it.</summary>
public sealed record ServerEndpointsDto(int Pid, string Http, string? Nbd, DateTimeOffset StartedAt, string? Iscsi = null, string? TlsCertificateSha256 = null, string? Replication = null, string? NbdSocket = null);
