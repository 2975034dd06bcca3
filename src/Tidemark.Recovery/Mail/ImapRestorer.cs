using System.Net;
using System.Net.Sockets;
using MailKit;
using MailKit.Net.Imap;
using MailKit.Search;
using MailKit.Security;
using MimeKit;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// Puts found messages back into the live mailboxes through the production IMAP server: logs in as
/// the master user on behalf of each owner (SASL PLAIN with the owner as authorization identity,
/// RFC 4616), and APPENDs each message with its flags, keywords and INTERNALDATE into its original
/// folder or one chosen folder, unless the folder already holds it (same Message-ID and content).
/// </summary>
public sealed class ImapRestorer
{
    /// <summary>How many same-Message-ID (or same-subject) candidates are compared by content at most.</summary>
    private const int MaxDuplicateCandidates = 200;

    private readonly string _host;
    private readonly int _port;
    private readonly SecureSocketOptions _tls;
    private readonly MasterCredentials _master;
    private readonly TextWriter _log;

    public ImapRestorer(string host, int port, SecureSocketOptions tls, MasterCredentials master, TextWriter log)
    {
        _host = host;
        _port = port;
        _tls = tls;
        _master = master;
        _log = log;
    }

    /// <summary>Where the login and each folder's duplicate check and APPEND are timed (issue 23's breakdown), when set.</summary>
    public StepTimings? Timings { get; set; }

    /// <summary>The server and login, without the password, for logs and the recovery's event.</summary>
    public override string ToString() => $"{_host}:{_port} as {_master.User}";

    /// <param name="into">a folder ('/' between levels) for every message, or null for each message's original folder</param>
    public async Task<IReadOnlyList<RestoreOutcome>> RestoreAsync(IReadOnlyList<FoundMessage> messages, string? into, CancellationToken ct)
    {
        var outcomes = new List<RestoreOutcome>();
        foreach (var owner in messages.GroupBy(m => m.User, StringComparer.Ordinal))
        {
            using var client = new ImapClient();
            var login = System.Diagnostics.Stopwatch.GetTimestamp();
            await ConnectAsync(client, owner.Key, ct);
            Timings?.Add("imap connect + login", System.Diagnostics.Stopwatch.GetElapsedTime(login));
            var folders = new Dictionary<string, IMailFolder>(StringComparer.Ordinal);
            foreach (var message in owner)
            {
                var target = into ?? message.Folder;
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                try
                {
                    if (!folders.TryGetValue(target, out var folder))
                    {
                        folder = await OpenOrCreateAsync(client, target, ct);
                        folders[target] = folder;
                    }

                    outcomes.Add(await RestoreOneAsync(folder, message, target, ct));
                    Timings?.Add("imap open + duplicate check + append", System.Diagnostics.Stopwatch.GetElapsedTime(started));
                }
                catch (Exception e) when (e is ImapCommandException or FolderNotFoundException or IOException or UnauthorizedAccessException or FormatException or RecoveryException)
                {
                    outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Failed, target, e.Message));
                }
            }

            var logout = System.Diagnostics.Stopwatch.GetTimestamp();
            await client.DisconnectAsync(quit: true, ct);
            Timings?.Add("imap logout", System.Diagnostics.Stopwatch.GetElapsedTime(logout));
        }

        return outcomes;
    }

    private async Task ConnectAsync(ImapClient client, string owner, CancellationToken ct)
    {
        try
        {
            await client.ConnectAsync(_host, _port, _tls, ct);
        }
        catch (Exception e) when (e is SocketException or IOException or ImapProtocolException or TimeoutException)
        {
            throw new RecoveryException(RecoveryFailure.Unreachable, $"cannot reach the IMAP server at {_host}:{_port} ({e.Message}); check --imap HOST:PORT", e);
        }
        catch (SslHandshakeException e)
        {
            throw new RecoveryException(RecoveryFailure.Unreachable, $"TLS with the IMAP server at {_host}:{_port} failed ({e.Message}); check --imap-tls and the server's certificate", e);
        }

        try
        {
            // PLAIN with authzid = the mailbox owner is the standard way to act for another user;
            // Dovecot maps it to its master-user login ("owner*master").
            var plain = new SaslMechanismPlain(new NetworkCredential(_master.User, _master.Password)) { AuthorizationId = owner };
            await client.AuthenticateAsync(plain, ct);
        }
        catch (AuthenticationException e)
        {
            throw new RecoveryException(RecoveryFailure.Refused, $"the IMAP server at {_host}:{_port} refused master user {_master.User} for mailbox {owner} ({e.Message}); check the master user file and that {owner} exists there", e);
        }
        catch (NotSupportedException e)
        {
            throw new RecoveryException(RecoveryFailure.Refused, $"the IMAP server at {_host}:{_port} does not offer SASL PLAIN ({e.Message}); it may require TLS first (--imap-tls starttls)", e);
        }

        await _log.WriteLineAsync($"IMAP {_host}:{_port}: logged in as {_master.User} for {owner}");
    }

    private static async Task<IMailFolder> OpenOrCreateAsync(ImapClient client, string name, CancellationToken ct)
    {
        if (string.Equals(name, "INBOX", StringComparison.OrdinalIgnoreCase))
        {
            await client.Inbox.OpenAsync(FolderAccess.ReadOnly, ct);
            return client.Inbox;
        }

        var personal = client.PersonalNamespaces.Count > 0 ? client.PersonalNamespaces[0] : new FolderNamespace('/', string.Empty);
        var parts = name.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0 || parts.Any(p => p.Contains(personal.DirectorySeparator, StringComparison.Ordinal)))
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"folder '{name}' cannot be written on this server (its hierarchy separator is '{personal.DirectorySeparator}')");
        }

        var folder = client.GetFolder(personal);
        foreach (var part in parts)
        {
            IMailFolder next;
            try
            {
                next = await folder.GetSubfolderAsync(part, ct);
            }
            catch (FolderNotFoundException)
            {
                // The folder was deleted since the snapshot, or it is the Recovered/ folder: make it,
                // subscribed so the owner's mail client shows it.
                next = await folder.CreateAsync(part, isMessageFolder: true, ct)
                    ?? throw new RecoveryException(RecoveryFailure.Refused, $"the IMAP server did not create folder '{name}'");
                await next.SubscribeAsync(ct);
            }

            folder = next;
        }

        await folder.OpenAsync(FolderAccess.ReadOnly, ct);
        return folder;
    }

    private static async Task<RestoreOutcome> RestoreOneAsync(IMailFolder folder, FoundMessage message, string target, CancellationToken ct)
    {
        string hash;
        await using (var file = File.OpenRead(message.Path))
        {
            hash = await ContentHash.ComputeAsync(file, ct);
        }

        if (await IsPresentAsync(folder, message, hash, ct))
        {
            return new RestoreOutcome(message, RestoreOutcome.Duplicate, target, "the folder already holds this message");
        }

        var mime = await MimeMessage.LoadAsync(message.Path, ct);
        var flags = MessageFlags.None;
        foreach (var flag in message.Flags)
        {
            // \Deleted would make the next EXPUNGE take it again; \Recent belongs to the server.
            flags |= flag switch
            {
                @"\Seen" => MessageFlags.Seen,
                @"\Answered" => MessageFlags.Answered,
                @"\Flagged" => MessageFlags.Flagged,
                @"\Draft" => MessageFlags.Draft,
                _ => MessageFlags.None,
            };
        }

        var keywords = message.Keywords.Where(IsAtom).ToList();
        var uid = await folder.AppendAsync(new AppendRequest(mime, flags, keywords, message.InternalDate), ct);
        return new RestoreOutcome(message, RestoreOutcome.Restored, target, uid is { } u ? $"uid {u.Id}" : null);
    }

    private static async Task<bool> IsPresentAsync(IMailFolder folder, FoundMessage message, string hash, CancellationToken ct)
    {
        var query = message.MessageId is { } id
            ? SearchQuery.HeaderContains("Message-ID", MailSearchFilter.NormalizeMessageId(id))
            : message.Subject.Length > 0 ? SearchQuery.SubjectContains(message.Subject) : SearchQuery.All;
        var candidates = await folder.SearchAsync(query, ct);
        foreach (var uid in candidates.Take(MaxDuplicateCandidates))
        {
            await using var stream = await folder.GetStreamAsync(uid, string.Empty, ct);
            if (await ContentHash.ComputeAsync(stream, ct) == hash)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>A keyword is an IMAP atom (RFC 3501 9); one that is not could not be sent and is dropped.</summary>
    internal static bool IsAtom(string keyword) =>
        keyword.Length is > 0 and <= 255 && keyword.All(c => c is > ' ' and < (char)127 && c is not ('(' or ')' or '{' or '%' or '*' or '"' or '\\' or ']'));
}
