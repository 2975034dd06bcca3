using System.CommandLine;
using System.Runtime.Versioning;
using MailKit.Security;
using Tidemark.Recovery;
using Tidemark.Recovery.Mail;

namespace Tidemark.Cli.Commands;

/// <summary>
/// `tidemark recover mail`: the CLI side of mail recovery (docs/adr/0012). It parses and checks the
/// options before anything is created on the server, runs <see cref="MailRecovery"/> on this host,
/// and prints what matched and what happened to each message.
/// </summary>
[SupportedOSPlatform("linux")]
public static class RecoverCommands
{
    private const int TableTextWidth = 40;

    public static Command Create() => new("recover", "Recover items from snapshots on this host (it mounts a view of the snapshot; needs root)") { CreateMail() };

    private static Command CreateMail()
    {
        var source = new Argument<string>("source") { Description = "VOLUME@SNAPSHOT, or VOLUME with --before DATE" };
        var before = new Option<string?>("--before") { Description = "use the newest snapshot of VOLUME taken before DATE (2026-10-22 or 2026-10-22T14:30, local time unless an offset is given)" };
        var users = new Option<string[]>("--user") { Description = "mailbox owner (repeatable); required to restore over IMAP" };
        var folder = new Option<string?>("--folder") { Description = "IMAP folder, levels separated by '/' (INBOX, Archive/2026)" };
        var messageId = new Option<string?>("--message-id") { Description = "Message-ID, with or without <>" };
        var subject = new Option<string?>("--subject") { Description = "subject contains TEXT (case-insensitive)" };
        var from = new Option<string?>("--from") { Description = "sender contains TEXT (case-insensitive)" };
        var to = new Option<string?>("--to") { Description = "a recipient (To, Cc, Bcc, Delivered-To) contains TEXT (case-insensitive)" };
        var since = new Option<string?>("--since") { Description = "received (INTERNALDATE) at or after DATE" };
        var until = new Option<string?>("--until") { Description = "received (INTERNALDATE) before DATE" };
        var hasAttachment = new Option<bool>("--has-attachment") { Description = "only messages with an attachment (reads whole messages, slower)" };
        var mailRoot = new Option<string>("--mail-root") { Description = "directory in the snapshot's file system that holds one home directory per user, each with a Maildir", DefaultValueFactory = _ => "/" };
        var format = new Option<string>("--format") { Description = "mail store format: auto (mdbox when the homes hold mdbox/ and no Maildir/), maildir, or mdbox (read through a private Dovecot on this host)", DefaultValueFactory = _ => "auto" };
        format.AcceptOnlyFromAmong("auto", "maildir", "mdbox");
        var restoreTo = new Option<string?>("--restore-to") { Description = "put the matches back: imap (into the live mailboxes through --imap) or smtp (mailed to --send-to through --smtp)" };
        restoreTo.AcceptOnlyFromAmong("imap", "smtp");
        var imap = new Option<string?>("--imap") { Description = "production IMAP server HOST:PORT (port 143 if omitted)" };
        var imapTls = new Option<string>("--imap-tls") { Description = "auto (TLS on 993, STARTTLS when offered), none, starttls or tls", DefaultValueFactory = _ => "auto" };
        imapTls.AcceptOnlyFromAmong("auto", "none", "starttls", "tls");
        var masterFile = new Option<string?>("--master-user-file") { Description = $"file with one line USER:PASSWORD of the IMAP master user (default: env {MasterCredentials.EnvironmentVariable})" };
        var into = new Option<string?>("--into") { Description = "restore into this folder instead of the original one; without a value Recovered/<today>", Arity = ArgumentArity.ZeroOrOne };
        var export = new Option<string?>("--export") { Description = "write the matches under DIR/USER/: .eml files in FOLDER/, or FOLDER.mbox with --export-format mbox" };
        var exportFormat = new Option<string>("--export-format") { Description = "eml (one file per message, received date as its time) or mbox (one mboxrd file per folder, for legal hold)", DefaultValueFactory = _ => "eml" };
        exportFormat.AcceptOnlyFromAmong("eml", "mbox");
        var smtp = new Option<string?>("--smtp") { Description = "SMTP server HOST:PORT for --restore-to smtp (port 25 if omitted)" };
        var smtpTls = new Option<string>("--smtp-tls") { Description = "auto (TLS on 465, STARTTLS when offered), none, starttls or tls", DefaultValueFactory = _ => "auto" };
        smtpTls.AcceptOnlyFromAmong("auto", "none", "starttls", "tls");
        var sendTo = new Option<string?>("--send-to") { Description = $"recipient of --restore-to smtp: an address, or {SmtpSender.UserPlaceholder}@DOMAIN for each mailbox owner" };
        var sendFrom = new Option<string>("--send-from") { Description = "sender of the recovery mails", DefaultValueFactory = _ => "tidemark-recovery@localhost" };
        var smtpLogin = new Option<string?>("--smtp-login-file") { Description = "file with one line USER:PASSWORD for SMTP submission (none: the server must relay for this host)" };
        var indexDir = new Option<string?>("--index-dir") { Description = $"where this host keeps each snapshot's header index, built by its first search so later ones open only the matches (default: env {MailIndexCache.EnvironmentVariable}, else {MailIndexCache.DefaultDirectory})" };
        var noIndex = new Option<bool>("--no-index") { Description = "search by reading every message's headers; keep and use no header index" };
        var host = new Option<string?>("--host") { Description = "run the recovery as a job of the server on host H's agent (a paired recovery host) instead of on this host; credentials are files on that host ('imap-master', 'smtp-login' in its agent directory), --export names a directory under its recovered/" };

        var mail = new Command("mail", "Find messages in a snapshot's mail store (Maildir or mdbox) and list them (dry run), restore them over IMAP, or export them")
        {
            source, before, users, folder, messageId, subject, from, to, since, until, hasAttachment, mailRoot, format, restoreTo, imap, imapTls, masterFile, into, export, exportFormat,
            smtp, smtpTls, sendTo, sendFrom, smtpLogin, indexDir, noIndex, host,
        };
        mail.SetClientAction(async (p, client, json, ct) =>
        {
            var filter = new MailSearchFilter
            {
                Users = p.GetValue(users) ?? [],
                Folder = p.GetValue(folder),
                MessageId = p.GetValue(messageId),
                Subject = p.GetValue(subject),
                From = p.GetValue(from),
                To = p.GetValue(to),
                Since = Date(p.GetValue(since), "--since"),
                Until = Date(p.GetValue(until), "--until"),
                HasAttachment = p.GetValue(hasAttachment),
            };
            if (p.GetResult(exportFormat) is { Implicit: false } && p.GetValue(export) is null)
            {
                throw new CliException("--export-format needs --export DIR");
            }

            if (p.GetValue(host) is { } recoveryHost)
            {
                var job = new RecoverOnHost.Options(
                    recoveryHost,
                    p.GetValue(source)!,
                    Date(p.GetValue(before), "--before"),
                    p.GetValue(restoreTo),
                    p.GetValue(imap) ?? p.GetValue(smtp),
                    p.GetValue(restoreTo) == "smtp" ? p.GetValue(smtpTls)! : p.GetValue(imapTls)!,
                    p.GetResult(into) is null ? null : p.GetValue(into) ?? $"Recovered/{DateTime.Now:yyyy-MM-dd}",
                    p.GetValue(sendTo),
                    p.GetResult(sendFrom) is { Implicit: false } ? p.GetValue(sendFrom) : null,
                    p.GetValue(export),
                    p.GetValue(exportFormat)!,
                    p.GetValue(mailRoot)!,
                    p.GetValue(format)!);
                if (p.GetValue(masterFile) is not null || p.GetValue(smtpLogin) is not null)
                {
                    throw new CliException($"--master-user-file and --smtp-login-file are for a recovery on this host; with --host the agent on {recoveryHost} reads them from its own directory ('{MailRecoveryJob.ImapMasterFile}', '{MailRecoveryJob.SmtpLoginFile}'), they never travel through the API");
                }

                if (p.GetValue(indexDir) is not null || p.GetValue(noIndex))
                {
                    throw new CliException($"--index-dir and --no-index are for a recovery on this host; with --host the agent on {recoveryHost} keeps its indexes in '{MailRecoveryJob.IndexDirectoryName}' in its own directory");
                }

                await RecoverOnHost.RunAsync(client, job, filter, json, ct);
                return;
            }

            var smtpOptionGiven = p.GetValue(smtp) is not null || p.GetValue(sendTo) is not null || p.GetValue(smtpLogin) is not null;
            MailDestination destination;
            if (p.GetValue(restoreTo) is { } mode)
            {
                if (p.GetValue(export) is not null)
                {
                    throw new CliException($"choose one of --restore-to {mode} and --export DIR");
                }

                if (mode == "smtp")
                {
                    if (p.GetResult(into) is not null || p.GetValue(imap) is not null || p.GetValue(masterFile) is not null)
                    {
                        throw new CliException("--into, --imap and --master-user-file are for --restore-to imap; --restore-to smtp mails each message to --send-to");
                    }

                    var (smtpHost, smtpPort) = Run(() => ImapEndpoint.Parse(p.GetValue(smtp) ?? throw new CliException("--restore-to smtp needs --smtp HOST:PORT (a mail server that accepts mail for --send-to)"), "--smtp", 25));
                    var recipient = p.GetValue(sendTo) ?? throw new CliException($"--restore-to smtp needs --send-to ADDRESS (an administrator, or {SmtpSender.UserPlaceholder}@DOMAIN for each mailbox owner)");
                    Run(() =>
                    {
                        SmtpSender.CheckAddresses(recipient, p.GetValue(sendFrom)!);
                        return 0;
                    });
                    var login = p.GetValue(smtpLogin) is { } loginFile ? Run(() => MasterCredentials.LoadLogin(loginFile, "SMTP login file")) : null;
                    destination = new MailDestination.Smtp(new SmtpSender(smtpHost, smtpPort, Tls(p.GetValue(smtpTls)!), recipient, p.GetValue(sendFrom)!, login, Console.Error));
                }
                else
                {
                    if (smtpOptionGiven)
                    {
                        throw new CliException("--smtp, --send-to and --smtp-login-file are for --restore-to smtp");
                    }

                    if (filter.Users.Count == 0)
                    {
                        throw new CliException("restoring over IMAP needs --user: name the mailbox(es) to put messages back into");
                    }

                    var (host, port) = Run(() => ImapEndpoint.Parse(p.GetValue(imap) ?? throw new CliException("--restore-to imap needs --imap HOST:PORT (the production IMAP server)")));
                    var master = Run(() => MasterCredentials.Load(p.GetValue(masterFile)));
                    var intoFolder = p.GetResult(into) is null ? null : p.GetValue(into) ?? $"Recovered/{DateTime.Now:yyyy-MM-dd}";
                    destination = new MailDestination.Imap(new ImapRestorer(host, port, Tls(p.GetValue(imapTls)!), master, Console.Error), intoFolder);
                }
            }
            else if (p.GetValue(export) is { } directory)
            {
                if (p.GetResult(into) is not null || smtpOptionGiven)
                {
                    throw new CliException("--into, --smtp and --send-to are for --restore-to; an export keeps the original folders as directories");
                }

                destination = new MailDestination.Export(Path.GetFullPath(directory), Mbox: p.GetValue(exportFormat) == "mbox");
            }
            else
            {
                if (p.GetResult(into) is not null || p.GetValue(imap) is not null || p.GetValue(masterFile) is not null || smtpOptionGiven)
                {
                    throw new CliException("--into, --imap, --master-user-file, --smtp and --send-to only act with --restore-to; without it this is a dry run");
                }

                destination = new MailDestination.List();
            }

            var storeFormat = p.GetValue(format) switch
            {
                "maildir" => MailStoreFormat.Maildir,
                "mdbox" => MailStoreFormat.Mdbox,
                _ => MailStoreFormat.Auto,
            };
            if (p.GetValue(noIndex) && p.GetValue(indexDir) is not null)
            {
                throw new CliException("give --index-dir or --no-index, not both");
            }

            var indexDirectory = p.GetValue(noIndex)
                ? null
                : p.GetValue(indexDir) ?? (Environment.GetEnvironmentVariable(MailIndexCache.EnvironmentVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : MailIndexCache.DefaultDirectory);
            var request = new MailRecoveryRequest(p.GetValue(source)!, Date(p.GetValue(before), "--before"), filter, destination, p.GetValue(mailRoot)!, Format: storeFormat, IndexDirectory: indexDirectory);
            var result = await Run(() => MailRecovery.RunAsync(client, request, Console.Error, ct));
            if (result.Timings is { } timings)
            {
                await Console.Error.WriteLineAsync($"timings: cli start {RecoverOnHost.SinceProcessStart().TotalSeconds:F2} s before the recovery; {timings}");
            }

            Print(result, json);
            var failed = result.Outcomes.Count(o => o.Result == RestoreOutcome.Failed);
            if (failed > 0)
            {
                throw new CliException($"{failed} message(s) could not be put back (see the table)", CommandRunner.Refused);
            }
        });
        return mail;
    }

    internal static void Print(MailRecoveryResult result, bool json)
    {
        if (json)
        {
            Output.Json(result);
            return;
        }

        if (result.Outcomes.Count == 0)
        {
            Output.Table(
                ["USER", "FOLDER", "RECEIVED", "FROM", "SUBJECT", "SIZE", "FLAGS"],
                result.Matches.Select(m => (IReadOnlyList<string>)[m.User, m.Folder, Output.Time(m.InternalDate), Cut(m.From), Cut(m.Subject), Output.Size(m.SizeBytes), Flags(m)]));
        }
        else
        {
            Output.Table(
                ["RESULT", "USER", "FOLDER", "TO", "RECEIVED", "SUBJECT", "FLAGS"],
                result.Outcomes.Select(o => (IReadOnlyList<string>)[o.Result, o.Message.User, o.Message.Folder, o.Detail is null ? o.Target : $"{o.Target} ({o.Detail})", Output.Time(o.Message.InternalDate), Cut(o.Message.Subject), Flags(o.Message)]));
        }

        Console.Out.WriteLine($"{result.Matches.Count} message(s) matched in {result.Snapshot}"
            + (result.Outcomes.Count > 0 ? $"; {result.Outcomes.Count(o => o.Result == RestoreOutcome.Restored)} restored, {result.Outcomes.Count(o => o.Result == RestoreOutcome.Duplicate)} already there, {result.Outcomes.Count(o => o.Result == RestoreOutcome.Failed)} failed" : string.Empty));
    }

    private static string Flags(FoundMessage m) => string.Join(' ', m.Flags.Concat(m.Keywords));

    private static string Cut(string text)
    {
        var line = text.ReplaceLineEndings(" ");
        return line.Length <= TableTextWidth ? line : line[..(TableTextWidth - 1)] + "…";
    }

    internal static DateTimeOffset? Date(string? text, string what) => text is null ? null : Run(() => SnapshotSelector.ParseDate(text, what));

    private static SecureSocketOptions Tls(string mode) => mode switch
    {
        "none" => SecureSocketOptions.None,
        "starttls" => SecureSocketOptions.StartTls,
        "tls" => SecureSocketOptions.SslOnConnect,
        _ => SecureSocketOptions.Auto,
    };

    private static T Run<T>(Func<T> step)
    {
        try
        {
            return step();
        }
        catch (RecoveryException e)
        {
            throw ToCli(e);
        }
    }

    private static async Task<T> Run<T>(Func<Task<T>> step)
    {
        try
        {
            return await step();
        }
        catch (RecoveryException e)
        {
            throw ToCli(e);
        }
    }

    private static CliException ToCli(RecoveryException e) => new(e.Message, e.Failure switch
    {
        RecoveryFailure.Refused => CommandRunner.Refused,
        RecoveryFailure.Unreachable => CommandRunner.Unreachable,
        _ => CommandRunner.BadInput,
    });
}
