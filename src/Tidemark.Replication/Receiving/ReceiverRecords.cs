using Tidemark.Api;

namespace Tidemark.Replication;

/// <summary>
/// A volume replicated into this server, as persisted: a control record in the pool (kind
/// "incoming", version 1, named by the volume; ADR 0011). Its own type, not the API's
/// <see cref="IncomingReplicaDto"/> (whose promotion state and standby exports are kept in records
/// of their own). The layout is that of an entry of DATA/incoming.json of older versions, so such a
/// file imports as it is. Field names are persisted: never rename them (ControlRecordGoldenTests).
/// </summary>
/// <param name="Sequence">Replicated snapshots committed into the volume so far (replication state is keyed by it, never by time).</param>
/// <param name="Generation">The volume's role generation: bumped by every promotion; a lower one is refused.</param>
public sealed record IncomingRecord(
    string Volume,
    string Partner,
    string SourceVolume,
    string? LastSnapshot,
    DateTimeOffset? LastSnapshotCreatedAt,
    DateTimeOffset? LastReceivedAt,
    string? Group = null,
    int? KeepLast = null,
    Guid? LastSnapshotId = null,
    long Sequence = 0,
    long Generation = 0)
{
    public static IncomingRecord From(IncomingReplicaDto d) =>
        new(d.Volume, d.Partner, d.SourceVolume, d.LastSnapshot, d.LastSnapshotCreatedAt, d.LastReceivedAt, d.Group, d.KeepLast, d.LastSnapshotId, d.Sequence, d.Generation);

    /// <summary>As the receiver keeps it in memory; promotion and standby exports are filled in when shown.</summary>
    public IncomingReplicaDto ToDto() =>
        new(Volume, Partner, SourceVolume, LastSnapshot, LastSnapshotCreatedAt, LastReceivedAt, false, Group, KeepLast: KeepLast)
        {
            LastSnapshotId = LastSnapshotId,
            Sequence = Sequence,
            Generation = Generation,
        };
}

/// <summary>
/// How far an interrupted transfer into a volume durably got (kind "receiving", version 1, named by
/// the volume): the sender resumes there, also after a restart. The layout of a value of
/// DATA/receiving.json of older versions.
/// </summary>
public sealed record ReceivingRecord(Guid SnapshotId, long AppliedOffset);

/// <summary>
/// The exports a partner prepared for its replica here, brought up on promotion (kind "standby",
/// version 1, named by the volume). Carries no CHAP secrets: they are refused for standby exports.
/// </summary>
public sealed record StandbyRecord(IReadOnlyList<StandbyExportRecord> Exports);

/// <summary>One standby export: the fields of <see cref="CreateExportRequest"/> less its secrets, as DATA/standby.json of older versions held them.</summary>
public sealed record StandbyExportRecord(
    string Target,
    string? Name = null,
    string Protocol = "nbd",
    bool ReadOnly = false,
    IReadOnlyList<string>? AdditionalTargets = null,
    string? Iqn = null,
    IReadOnlyList<string>? AllowedInitiators = null,
    string? ChapUser = null,
    string? MutualChapUser = null,
    bool TlsRequired = false)
{
    public static StandbyExportRecord From(CreateExportRequest r) =>
        new(r.Target, r.Name, r.Protocol, r.ReadOnly, r.AdditionalTargets, r.Iqn, r.AllowedInitiators, r.ChapUser, r.MutualChapUser, r.TlsRequired);

    public CreateExportRequest ToRequest() =>
        new(Target, Name, Protocol, ReadOnly, AdditionalTargets, Iqn, AllowedInitiators, ChapUser, null, MutualChapUser, null, TlsRequired);
}

/// <summary>
/// A replica promoted to a primary here (kind "promoted", version 1, named by the volume): no partner
/// may write into it any more. <paramref name="PromotedAt"/> is null for one imported from
/// DATA/promoted.json of an older version, which did not keep the time.
/// </summary>
public sealed record PromotedRecord(DateTimeOffset? PromotedAt);
