namespace Tidemark.Api;

/// <summary>
/// <c>POST /api/v1/recoveries/mail</c>: a mail recovery run by the server as a job (docs/adr/0012).
/// The server picks the snapshot (<see cref="Snapshot"/> VOLUME@SNAPSHOT, or the newest of
/// <see cref="Volume"/> taken before <see cref="Before"/>), makes a view of it and an NBD export,
/// and asks the agent of <see cref="Host"/> (the recovery host) to mount it read-only, search and
/// deliver; the view goes again whatever happens. Credentials never travel through the API: the
/// agent reads the IMAP master user and the SMTP login from files on its own host.
/// </summary>
/// <param name="MailRoot">the directory in the snapshot's file system that holds the users' homes ("/" by default)</param>
/// <param name="Format">"auto" (default), "maildir" or "mdbox"</param>
public sealed record MailRecoveryJobRequest(
    string Host,
    string? Snapshot = null,
    string? Volume = null,
    DateTimeOffset? Before = null,
    MailFilterDto? Filter = null,
    MailTargetDto? Target = null,
    string? MailRoot = null,
    string? Format = null);

/// <summary>What to look for; every criterion given must match (as <c>tidemark recover mail</c>'s options).</summary>
public sealed record MailFilterDto(
    IReadOnlyList<string>? Users = null,
    string? Folder = null,
    string? MessageId = null,
    string? Subject = null,
    string? From = null,
    string? To = null,
    DateTimeOffset? Since = null,
    DateTimeOffset? Until = null,
    bool HasAttachment = false);

/// <summary>
/// Where the matches go: <see cref="Kind"/> "list" (a dry run, the default), "imap" (APPEND as the
/// master user into <see cref="Address"/>, the original folder or <see cref="Into"/>), "smtp" (mailed
/// to <see cref="SendTo"/> through <see cref="Address"/>) or "export" (files in the directory
/// <see cref="ExportName"/> under the agent's <c>recovered/</c> directory, eml or mbox).
/// </summary>
/// <param name="Address">HOST:PORT of the IMAP or SMTP server, as the recovery host reaches it</param>
/// <param name="Tls">auto (default), none, starttls or tls</param>
public sealed record MailTargetDto(
    string Kind = "list",
    string? Address = null,
    string? Tls = null,
    string? Into = null,
    string? SendTo = null,
    string? SendFrom = null,
    string? ExportName = null,
    string? ExportFormat = null)
{
    public const string List = "list";
    public const string Imap = "imap";
    public const string Smtp = "smtp";
    public const string Export = "export";
}

/// <summary>What the server asks a recovery host's agent to do: the view's export is made and deleted by the server.</summary>
/// <param name="Id">the job's id, by which the server cancels it (<c>POST agent/v1/recoveries/ID/cancel</c>)</param>
/// <param name="SnapshotId">the snapshot's identity, which keys the host's header index of it (a name can be reused)</param>
public sealed record AgentMailRecoveryRequest(
    string Id,
    string Snapshot,
    DateTimeOffset SnapshotCreatedAt,
    string ExportUrl,
    MailFilterDto Filter,
    MailTargetDto Target,
    string MailRoot,
    string Format,
    Guid? SnapshotId = null,
    bool AnswerBeforeTeardown = false);

/// <summary>
/// The end of a recovery's teardown on the agent (<c>POST agent/v1/recoveries/ID/teardown</c>), for a
/// recovery that answered before it (<see cref="AgentMailRecoveryRequest.AnswerBeforeTeardown"/>): the
/// server deletes the view only after this answer. <see cref="Pending"/> false: nothing of that id was
/// being taken down (already done, or never started).
/// </summary>
public sealed record AgentTeardownDto(bool Pending, IReadOnlyList<string> TeardownProblems, IReadOnlyList<MailRecoveryStepDto> Steps);

/// <summary>
/// What the server asks an agent after a snapshot (docs/adr/0012, "Index after a snapshot"): build the
/// header index of the mail stores it declares on <see cref="Volume"/>, from the view exported at
/// <see cref="ExportUrl"/>. Without an export URL it only answers which stores it would index (a probe:
/// the server makes a view only for a host that has something to index).
/// </summary>
/// <param name="Id">the job's id, by which the server cancels it (<c>POST agent/v1/recoveries/ID/cancel</c>)</param>
public sealed record AgentMailIndexRequest(
    string Id,
    string Snapshot,
    string Volume,
    DateTimeOffset SnapshotCreatedAt,
    Guid SnapshotId,
    string? ExportUrl);

/// <summary>An index build's result: the stores indexed ("mail: maildir /srv/mail, 3 users, 2,000 messages"), or why none was.</summary>
/// <param name="Stores">one line per store of the volume, what was indexed or why not</param>
public sealed record MailIndexResultDto(
    string Snapshot,
    string Host,
    IReadOnlyList<string> Stores,
    int Users,
    long Messages,
    double Seconds,
    IReadOnlyList<string> TeardownProblems);

/// <summary>A mail recovery's result, the job's result: what matched, what happened to each, what teardown left behind.</summary>
/// <param name="Error">why the recovery stopped (after the view was made), when it did; the matches and outcomes so far are listed</param>
/// <param name="Steps">where the seconds went (issue 23): the server's steps and the agent's, in order; null from an older agent or server</param>
public sealed record MailRecoveryResultDto(
    string Snapshot,
    DateTimeOffset SnapshotCreatedAt,
    string Host,
    string Destination,
    IReadOnlyList<MailMatchDto> Matches,
    IReadOnlyList<MailOutcomeDto> Outcomes,
    IReadOnlyList<string> TeardownProblems,
    string? Error = null,
    IReadOnlyList<MailRecoveryStepDto>? Steps = null);

/// <summary>One timed step of a mail recovery: its name, its wall-clock seconds, and where it ran ("server", "agent", "cli").</summary>
public sealed record MailRecoveryStepDto(string Step, double Seconds, string Where);

/// <summary>One message found in the snapshot, with the state it had then (flags, keywords, received date).</summary>
public sealed record MailMatchDto(
    string User,
    string Folder,
    DateTimeOffset InternalDate,
    DateTimeOffset? Date,
    string From,
    string To,
    string Subject,
    string? MessageId,
    long SizeBytes,
    IReadOnlyList<string> Flags,
    IReadOnlyList<string> Keywords);

/// <summary>What happened to one match: "restored", "skipped-duplicate" or "failed", and where it went.</summary>
public sealed record MailOutcomeDto(string Result, MailMatchDto Message, string Target, string? Detail);
