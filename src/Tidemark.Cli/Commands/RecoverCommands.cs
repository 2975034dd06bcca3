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
        var restoreTo = new Option<string?>("--restore-to") { Description = "put the matches back: imap (into the live mailboxes through --imap)" };
        restoreTo.AcceptOnlyFromAmong("imap");
        var imap = new Option<string?>("--imap") { Description = "production IMAP server HOST:PORT (port 143 if omitted)" };
        var imapTls = new Option<string>("--imap-tls") { Description = "auto (TLS on 993, STARTTLS when offered), none, starttls or tls", DefaultValueFactory = _ => "auto" };
        imapTls.AcceptOnlyFromAmong("auto", "none", "starttls", "tls");
        var masterFile = new Option<string?>("--master-user-file") { Description = $"file with one line USER:PASSWORD of the IMAP master user (default: env {MasterCredentials.EnvironmentVariable})" };
        var into = new Option<string?>("--into") { Description = "restore into this folder instead of the original one; without a value Recovered/<today>", Arity = ArgumentArity.ZeroOrOne };
        var export = new Option<string?>("--export") { Description = "write the matches as .eml files under DIR/USER/FOLDER/" };

        var mail = new Command("mail", "Find messages in a snapshot's mail store (Maildir or mdbox) and list them (dry run), restore them over IMAP, or export them")
        {
            source, before, users, folder, messageId, subject, from, to, since, until, hasAttachment, mailRoot, format, restoreTo, imap, imapTls, masterFile, into, export,
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
            MailDestination destination;
            if (p.GetValue(restoreTo) is not null)
            {
                if (p.GetValue(export) is not null)
                {
                    throw new CliException("choose one of --restore-to imap and --export DIR");
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
            else if (p.GetValue(export) is { } directory)
            {
                if (p.GetResult(into) is not null)
                {
                    throw new CliException("--into is for --restore-to imap; an export keeps the original folders as directories");
                }

                destination = new MailDestination.Export(Path.GetFullPath(directory));
            }
            else
            {
                if (p.GetResult(into) is not null || p.GetValue(imap) is not null || p.GetValue(masterFile) is not null)
                {
                    throw new CliException("--into, --imap and --master-user-file only act with --restore-to imap; without it this is a dry run");
                }

                destination = new MailDestination.List();
            }

            var storeFormat = p.GetValue(format) switch
            {
                "maildir" => MailStoreFormat.Maildir,
                "mdbox" => MailStoreFormat.Mdbox,
                _ => MailStoreFormat.Auto,
            };
            var request = new MailRecoveryRequest(p.GetValue(source)!, Date(p.GetValue(before), "--before"), filter, destination, p.GetValue(mailRoot)!, Format: storeFormat);
            var result = await Run(() => MailRecovery.RunAsync(client, request, Console.Error, ct));
            Print(result, json);
            var failed = result.Outcomes.Count(o => o.Result == RestoreOutcome.Failed);
            if (failed > 0)
            {
                throw new CliException($"{failed} message(s) could not be put back (see the table)", CommandRunner.Refused);
            }
        });
        return mail;
    }

    private static void Print(MailRecoveryResult result, bool json)
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

    private static DateTimeOffset? Date(string? text, string what) => text is null ? null : Run(() => SnapshotSelector.ParseDate(text, what));

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
