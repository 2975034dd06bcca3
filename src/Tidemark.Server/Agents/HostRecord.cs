using Tidemark.Engine.Control;

namespace Tidemark.Server.Agents;

/// <summary>
/// An application host as persisted: a control record in the pool (kind "host", version 1, named
/// by the host; ADR 0011, 0015). Its own type, not the API's <see cref="Api.HostDto"/>. Field names
/// are persisted: never rename them (ControlRecordGoldenTests).
/// </summary>
public sealed record HostRecord(string Name, string Address, string Fingerprint, DateTimeOffset AddedAt)
{
    public static readonly ControlKind<HostRecord> Kind = new("host", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });
}

/// <summary>
/// How consistent a snapshot is, as persisted: a control record (kind "consistency", version 1)
/// named by the snapshot's id, so it follows the snapshot through renames and across replication
/// ids. <see cref="Level"/>: "crash", "filesystem" or "application". A snapshot without one is
/// crash-consistent (nothing was quiesced for it). Field names are persisted: never rename them.
/// </summary>
/// <param name="Detail">What was quiesced ("db1: /srv/data (ext4)") or why it fell back ("db1: unreachable ...").</param>
/// <param name="PausedSeconds">The longest time any host's application was paused for this snapshot.</param>
/// <param name="BackupLabels">PostgreSQL backup labels by "HOST/CLUSTER" (pg_backup_stop's labelfile); left out when none.</param>
public sealed record ConsistencyRecord(
    string Level,
    string Detail,
    IReadOnlyList<string> Hosts,
    double? PausedSeconds,
    DateTimeOffset At,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] IReadOnlyDictionary<string, string>? BackupLabels = null)
{
    public static readonly ControlKind<ConsistencyRecord> Kind = new("consistency", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });

    public const string Crash = "crash";
    public const string FileSystem = "filesystem";
    public const string Application = "application";

    /// <summary>What the API and `snapshot list` show: "filesystem (db1: /srv/data (ext4))". Derived, not persisted.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string Label => $"{Level} ({Detail})";
}

/// <summary>
/// A snapshot's last verification (ADR 0015), as persisted: a control record (kind "verification",
/// version 1) named by the snapshot's id, like <see cref="ConsistencyRecord"/>. <see cref="Verdict"/>:
/// "passed", "failed" or "not-checked"; <see cref="Reason"/> says why for the last two.
/// Field names are persisted: never rename them.
/// </summary>
/// <param name="Checks">What ran: "mounted read-only", "e2fsck -fn: clean", "postgresql cluster main: started, pg_amcheck clean".</param>
/// <param name="Seconds">From the view's creation to its deletion, by the server's clock.</param>
public sealed record VerificationRecord(string Verdict, string? Reason, IReadOnlyList<string> Checks, double Seconds, string Host, DateTimeOffset At)
{
    public static readonly ControlKind<VerificationRecord> Kind = new("verification", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });
}
