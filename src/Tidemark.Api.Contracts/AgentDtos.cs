namespace Tidemark.Api;

/// <summary>An application host whose agent this server calls around snapshots (ADR 0015), pinned by its certificate fingerprint.</summary>
public sealed record HostDto(string Name, string Address, string Fingerprint, DateTimeOffset AddedAt);

/// <summary><see cref="Address"/>: the agent's listener (host:port); <see cref="Fingerprint"/>: what `tidemark agent pair` printed there.</summary>
public sealed record AddHostRequest(string Name, string Address, string Fingerprint);

/// <summary>What a host's agent said when asked: its status and its mounts.</summary>
public sealed record HostStatusDto(string Name, AgentStatusDto Status, IReadOnlyList<AgentMountDto> Mounts);

// ---- the agent's own API (/agent/v1, mutual TLS; the server is its only client) ----

/// <summary>
/// An agent's state. <see cref="Sessions"/>: quiesce sessions open now (normally none: a snapshot
/// holds one for well under a second). <see cref="Recovered"/>: what the agent undid at its start
/// for a previous run that was killed mid-quiesce (its journal), when anything.
/// </summary>
public sealed record AgentStatusDto(
    string Name,
    string Fingerprint,
    string Version,
    double DeadlineSeconds,
    IReadOnlyList<AgentSessionDto> Sessions,
    AgentSessionDto? LastSession,
    IReadOnlyList<AgentRecoveryDto>? Recovered = null,
    IReadOnlyList<AgentMailStoreDto>? MailStores = null);

/// <summary>
/// A mail store the agent's config declares, as a recovery needs it: <see cref="Volume"/> is the
/// declared volume whose mount holds the store (null when none does), <see cref="MailRoot"/> the
/// store's directory inside that volume's file system ("/" when the mount is the mail root), which is
/// what <c>POST /api/v1/recoveries/mail</c> takes as its mail root. The web console offers mail
/// recovery for the volumes named here.
/// </summary>
public sealed record AgentMailStoreDto(string Name, string? Volume, string MailRoot, string Format);

/// <summary>
/// One change a killed run of the agent left (a Postfix hold, a frozen file system, an owed post
/// hook: <see cref="Kind"/> postfix, freeze, script), and what the agent's start did about it.
/// <see cref="Settled"/> false: it could not be undone and is tried again at the next start.
/// </summary>
public sealed record AgentRecoveryDto(string Kind, string Message, bool Settled);

/// <summary>
/// One quiesce: what it froze, until when at the latest, and how it ended. <see cref="State"/>:
/// "quiesced", "resumed" (by the server), "expired" (resumed by the agent at its deadline).
/// <see cref="PausedSeconds"/>: the whole quiesce, request to resume done (PostgreSQL's checkpoint in
/// pg_backup_start included, which does not stop writes); <see cref="FrozenSeconds"/>: first freeze
/// to last thaw, what the application's writes wait (null when no file system was frozen).
/// </summary>
public sealed record AgentSessionDto(
    string Id,
    string State,
    DateTimeOffset StartedAt,
    DateTimeOffset ResumeBy,
    IReadOnlyList<string> Quiesced,
    DateTimeOffset? EndedAt = null,
    double? PausedSeconds = null,
    double? FrozenSeconds = null);

/// <summary>
/// A local mount the agent can quiesce. <see cref="Volume"/> is the Tidemark volume under it, when
/// declared in the agent's config; <see cref="BackingFile"/> is the file under a loop device (how an
/// nbdfuse attachment shows), found in /sys; <see cref="Attachment"/> is the NBD URI the nbdfuse
/// process serving that file was started with, when one is (what lets a snapshot find the mount
/// without a declaration, see <see cref="QuiesceRequest.Attachments"/>).
/// </summary>
public sealed record AgentMountDto(string Path, string FileSystem, string Source, string? Volume, string? BackingFile, bool Freezable, string? Attachment = null);

/// <summary>
/// <see cref="Volumes"/>: the volumes about to be cut; the agent quiesces what sits on them and refuses
/// when nothing does. <see cref="Attachments"/>: how a client reaches each of them (the server's NBD
/// export URLs), so the agent also finds mounts attached through nbdfuse that its config does not declare.
/// </summary>
public sealed record QuiesceRequest(IReadOnlyList<string> Volumes, double? DeadlineSeconds = null, IReadOnlyList<VolumeAttachmentDto>? Attachments = null);

/// <summary>A URL through which <see cref="Volume"/> is exported (nbd://HOST:PORT/NAME or nbd+unix:///NAME?socket=PATH).</summary>
public sealed record VolumeAttachmentDto(string Volume, string Url);

/// <summary>
/// A successful quiesce. <see cref="Consistency"/>: "filesystem" or "application"; <see cref="Detail"/>
/// names what (e.g. "/srv/data (ext4)").
/// <see cref="DeadlineSeconds"/> is how long after quiescing the agent resumes by itself, and
/// <see cref="QuiesceSeconds"/> how long quiescing took after the request arrived: the server, timing
/// from before it sent the request, knows a cut finished within their sum was quiesced.
/// </summary>
/// <see cref="Recovered"/>: the agent's start-up recovery (<see cref="AgentStatusDto.Recovered"/>), in the first quiesce answer after it, for the server's event log.
public sealed record QuiesceResultDto(string Session, string Consistency, string Detail, IReadOnlyList<string> Quiesced, DateTimeOffset ResumeBy, double DeadlineSeconds, double QuiesceSeconds = 0, IReadOnlyList<string>? Output = null, IReadOnlyList<AgentRecoveryDto>? Recovered = null);

/// <summary>
/// A resume. <see cref="Expired"/>: the agent had already resumed by itself at its deadline, so the
/// application ran on before the server called back and the snapshot may postdate that: the server
/// labels it crash-consistent.
/// </summary>
/// <see cref="BackupLabels"/>: PostgreSQL's backup_label per cluster (from pg_backup_stop), when one was in backup mode;
/// <see cref="Output"/> (also in the quiesce answer): what script hooks printed, for the server's event log.
public sealed record ResumeResultDto(string Session, bool Expired, double PausedSeconds, IReadOnlyList<string> Resumed, IReadOnlyDictionary<string, string>? BackupLabels = null, IReadOnlyList<string>? Output = null);

/// <summary>The backup labels kept with a snapshot, by "HOST/CLUSTER".</summary>
public sealed record BackupLabelsDto(string Snapshot, IReadOnlyDictionary<string, string> Labels);

/// <summary>
/// The server asks an agent to verify a snapshot (ADR 0015): <see cref="ExportUrl"/> is an NBD export
/// of a throwaway view of <see cref="Snapshot"/> that the server made and deletes afterwards;
/// <see cref="Volume"/> says which of the host's declared mounts the view stands for.
/// <see cref="Members"/>: the other snapshots of the same group cut, each with a view of its own, when
/// the server verifies a group (a PostgreSQL cluster whose data and WAL sit on two volumes starts only
/// on the views together); null for one volume.
/// </summary>
public sealed record VerifyRequest(string Snapshot, string Volume, string ExportUrl, IReadOnlyList<VerifyMember>? Members = null);

/// <summary>One more snapshot of a group's cut in a <see cref="VerifyRequest"/>, with its view's NBD export.</summary>
public sealed record VerifyMember(string Snapshot, string Volume, string ExportUrl);

/// <summary>
/// A verification's verdict: "passed", "failed" (with <see cref="Reason"/>) or "not-checked" (with
/// <see cref="Reason"/>: nothing to check, or the host could not check). <see cref="Checks"/> lists
/// what ran, e.g. "e2fsck -fn: clean". <see cref="Seconds"/>: how long it took.
/// </summary>
public sealed record VerifyResultDto(string Verdict, string? Reason, IReadOnlyList<string> Checks, double Seconds, IReadOnlyList<string>? Output = null)
{
    public const string Passed = "passed";
    public const string Failed = "failed";
    public const string NotChecked = "not-checked";
}

/// <summary>`tidemark snapshot verify`: the host whose agent mounts and checks a view of the snapshot.</summary>
public sealed record VerifySnapshotRequest(string Host);

/// <summary>A snapshot's last verification, as the API shows it (<see cref="SnapshotDto.Verification"/>).</summary>
public sealed record SnapshotVerificationDto(string Verdict, string? Reason, IReadOnlyList<string> Checks, double Seconds, string Host, DateTimeOffset At)
{
    /// <summary>"passed in 4.2s (e2fsck -fn: clean)", "failed in 2.0s: REASON": what `snapshot list` shows. Derived, not sent.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string Summary => Reason is null
        ? $"{Verdict} in {Seconds:0.0}s ({string.Join("; ", Checks)})"
        : $"{Verdict} in {Seconds:0.0}s: {Reason}";
}
