using MailKit.Security;
using Tidemark.Api;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// A recovery job's part on the recovery host (docs/adr/0012): the request comes from the server
/// (over the agent's mutual-TLS link), the view's export is the server's, the credentials are files
/// of this host's own. Turns the wire's request into a <see cref="MailRecoveryRequest"/>, refusing
/// what the wire must not choose (paths, credentials), runs the same recovery as the CLI on the
/// attached export, and turns the result back into the job's result.
/// </summary>
public static class MailRecoveryJob
{
    /// <summary>The IMAP master user, one line USER:PASSWORD, in the host's credential directory.</summary>
    public const string ImapMasterFile = "imap-master";

    /// <summary>The SMTP submission login (optional), one line USER:PASSWORD, in the host's credential directory.</summary>
    public const string SmtpLoginFile = "smtp-login";

    /// <summary>The host's header indexes of snapshots (docs/adr/0012), under the agent's directory.</summary>
    public const string IndexDirectoryName = "mail-index";

    private const int MaxUsers = 1000;
    private const int MaxText = 1024;

    /// <param name="credentialDirectory">where <see cref="ImapMasterFile"/> and <see cref="SmtpLoginFile"/> are (the agent's directory)</param>
    /// <param name="exportRoot">the only directory exports go under (a name from the wire picks a subdirectory)</param>
    /// <param name="delivered">called with the result once the messages are delivered, before the teardown (<see cref="MailRecovery.RunAttachedAsync"/>)</param>
    public static async Task<MailRecoveryResultDto> RunAsync(AgentMailRecoveryRequest request, string host, string credentialDirectory, string exportRoot, TextWriter log, CancellationToken ct, Action<MailRecoveryResultDto>? delivered = null)
    {
        var recovery = ToRequest(request, credentialDirectory, exportRoot, log) with { IndexDirectory = Path.Combine(credentialDirectory, IndexDirectoryName) };
        var destination = recovery.Destination.Describe();
        var result = await MailRecovery.RunAttachedAsync(request.ExportUrl, recovery, request.SnapshotCreatedAt, request.SnapshotId, log, ct, delivered is null ? null : r => delivered(ToDto(r, host, destination)));
        return ToDto(result, host, destination);
    }

    internal static MailRecoveryRequest ToRequest(AgentMailRecoveryRequest request, string credentialDirectory, string exportRoot, TextWriter log)
    {
        // Only an NBD export reaches nbdfuse: never a local file or another scheme from the wire.
        if (request.ExportUrl is not { Length: <= 2048 } url || !(url.StartsWith("nbd://", StringComparison.Ordinal) || url.StartsWith("nbds://", StringComparison.Ordinal)))
        {
            throw Bad("a recovery needs the nbd:// URL of the view's export");
        }

        if (string.IsNullOrEmpty(request.Snapshot) || request.Snapshot.Length > 512 || request.Snapshot.Any(char.IsControl))
        {
            throw Bad("a recovery names the snapshot it reads");
        }

        var format = (request.Format ?? "auto") switch
        {
            "auto" => MailStoreFormat.Auto,
            "maildir" => MailStoreFormat.Maildir,
            "mdbox" => MailStoreFormat.Mdbox,
            var other => throw Bad($"mail store format '{Cut(other)}' is not auto, maildir or mdbox"),
        };
        var filter = Filter(request.Filter ?? new MailFilterDto());
        var destination = Destination(request.Target ?? new MailTargetDto(), filter, credentialDirectory, exportRoot, log);
        return new MailRecoveryRequest(request.Snapshot, null, filter, destination, CheckText(request.MailRoot ?? "/", "mail root"), Format: format);
    }

    internal static MailSearchFilter Filter(MailFilterDto dto)
    {
        var users = dto.Users ?? [];
        if (users.Count > MaxUsers || users.Any(u => string.IsNullOrWhiteSpace(u) || u.Length > 256 || u.Contains('/', StringComparison.Ordinal) || u is "." or ".." || u.Any(char.IsControl)))
        {
            throw Bad($"users are mailbox names (at most {MaxUsers}, no '/', no control characters)");
        }

        return new MailSearchFilter
        {
            Users = users,
            Folder = Optional(dto.Folder, "folder"),
            MessageId = Optional(dto.MessageId, "Message-ID"),
            Subject = Optional(dto.Subject, "subject"),
            From = Optional(dto.From, "from"),
            To = Optional(dto.To, "to"),
            Since = dto.Since,
            Until = dto.Until,
            HasAttachment = dto.HasAttachment,
        };
    }

    internal static MailDestination Destination(MailTargetDto target, MailSearchFilter filter, string credentialDirectory, string exportRoot, TextWriter log)
    {
        var tls = (target.Tls ?? "auto") switch
        {
            "auto" => SecureSocketOptions.Auto,
            "none" => SecureSocketOptions.None,
            "starttls" => SecureSocketOptions.StartTls,
            "tls" => SecureSocketOptions.SslOnConnect,
            var other => throw Bad($"TLS mode '{Cut(other)}' is not auto, none, starttls or tls"),
        };
        switch (target.Kind ?? MailTargetDto.List)
        {
            case MailTargetDto.List:
                return new MailDestination.List();
            case MailTargetDto.Imap:
                {
                    if (filter.Users.Count == 0)
                    {
                        throw Bad("restoring over IMAP needs users: name the mailbox(es) to put messages back into");
                    }

                    var (host, port) = ImapEndpoint.Parse(target.Address ?? throw Bad("restoring over IMAP needs the IMAP server's HOST:PORT"), "imap address");
                    var master = MasterCredentials.LoadLogin(Path.Combine(credentialDirectory, ImapMasterFile), "IMAP master user file");
                    return new MailDestination.Imap(new ImapRestorer(host, port, tls, master, log), Optional(target.Into, "into folder"));
                }

            case MailTargetDto.Smtp:
                {
                    var (host, port) = ImapEndpoint.Parse(target.Address ?? throw Bad("sending by SMTP needs the SMTP server's HOST:PORT"), "smtp address", 25);
                    var recipient = target.SendTo ?? throw Bad($"sending by SMTP needs a recipient (an address, or {SmtpSender.UserPlaceholder}@DOMAIN)");
                    var sender = target.SendFrom ?? "tidemark-recovery@localhost";
                    SmtpSender.CheckAddresses(recipient, sender);
                    var loginFile = Path.Combine(credentialDirectory, SmtpLoginFile);
                    var login = File.Exists(loginFile) ? MasterCredentials.LoadLogin(loginFile, "SMTP login file") : null;
                    return new MailDestination.Smtp(new SmtpSender(host, port, tls, recipient, sender, login, log));
                }

            case MailTargetDto.Export:
                {
                    // A name, never a path: the server may only pick a directory under the host's own export root.
                    var name = target.ExportName ?? throw Bad("an export needs a name (a directory under the recovery host's recovered/ directory)");
                    if (name.Length is 0 or > 100 || name.StartsWith('.') || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
                    {
                        throw Bad($"export name '{Cut(name)}' must be one directory name of letters, digits, '-', '_' and '.' (not starting with '.')");
                    }

                    var mbox = (target.ExportFormat ?? "eml") switch
                    {
                        "eml" => false,
                        "mbox" => true,
                        var other => throw Bad($"export format '{Cut(other)}' is not eml or mbox"),
                    };
                    return new MailDestination.Export(Path.Combine(exportRoot, name), mbox);
                }

            default:
                throw Bad($"restore target '{Cut(target.Kind ?? string.Empty)}' is not list, imap, smtp or export");
        }
    }

    public static MailRecoveryResultDto ToDto(MailRecoveryResult result, string host, string destination, string? error = null) => new(
        result.Snapshot,
        result.SnapshotCreatedAt,
        host,
        destination,
        [.. result.Matches.Select(ToDto)],
        [.. result.Outcomes.Select(o => new MailOutcomeDto(o.Result, ToDto(o.Message), o.Target, o.Detail))],
        result.TeardownProblems,
        error,
        result.Timings is { } timings ? [.. timings.Steps.Select(s => new MailRecoveryStepDto(s.Step, s.Seconds, "agent"))] : null);

    private static MailMatchDto ToDto(FoundMessage m) =>
        new(m.User, m.Folder, m.InternalDate, m.Date, m.From, m.To, m.Subject, m.MessageId, m.SizeBytes, m.Flags, m.Keywords);

    private static string? Optional(string? text, string what) => text is null ? null : CheckText(text, what);

    private static string CheckText(string text, string what) =>
        text.Length <= MaxText && !text.Any(char.IsControl) ? text : throw Bad($"the {what} is one line of at most {MaxText} characters");

    private static string Cut(string text) => text.Length <= 40 ? text : text[..40] + "…";

    private static RecoveryException Bad(string message) => new(RecoveryFailure.BadInput, message);
}
