using MailKit;
using MailKit.Net.Imap;
using MailKit.Search;
using MailKit.Security;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// A mail store read through the recovery's own Dovecot (<see cref="PrivateDovecot"/>): for mdbox,
/// whose flags, keywords and received dates exist only in Dovecot's indexes. The text criteria are
/// narrowed by IMAP SEARCH on the server, then every criterion is applied here exactly as for Maildir.
/// </summary>
public sealed class DovecotMailStore : IMailStore
{
    private readonly PrivateDovecot _dovecot;

    public DovecotMailStore(PrivateDovecot dovecot)
    {
        _dovecot = dovecot;
    }

    public async Task<IReadOnlyList<FoundMessage>> SearchAsync(MailSearchFilter filter, string? stageDirectory, CancellationToken ct)
    {
        try
        {
            return await SearchCoreAsync(filter, stageDirectory, ct);
        }
        catch (Exception e) when (e is AuthenticationException or ImapCommandException or ImapProtocolException or IOException or System.Net.Sockets.SocketException or FolderNotFoundException)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"the recovery's own Dovecot could not read the snapshot's store ({e.Message}); its log: {_dovecot.LogTail()}", e);
        }
    }

    private async Task<IReadOnlyList<FoundMessage>> SearchCoreAsync(MailSearchFilter filter, string? stageDirectory, CancellationToken ct)
    {
        var found = new List<FoundMessage>();
        foreach (var user in _dovecot.Users.Where(filter.MatchesUser))
        {
            using var imap = new ImapClient();
            await imap.ConnectAsync("127.0.0.1", _dovecot.Port, SecureSocketOptions.None, ct);
            await imap.AuthenticateAsync(user, _dovecot.Password, ct);
            var personal = imap.PersonalNamespaces[0];
            var folders = (await imap.GetFoldersAsync(personal, subscribedOnly: false, ct)).ToList();
            if (!folders.Any(f => f.FullName == imap.Inbox.FullName))
            {
                folders.Insert(0, imap.Inbox);
            }

            foreach (var folder in folders)
            {
                var name = folder == imap.Inbox || folder.FullName == imap.Inbox.FullName ? "INBOX" : folder.FullName.Replace(personal.DirectorySeparator, '/');
                if (folder.Attributes.HasFlag(FolderAttributes.NoSelect) || folder.Attributes.HasFlag(FolderAttributes.NonExistent) || !filter.MatchesFolder(name))
                {
                    continue;
                }

                await folder.OpenAsync(FolderAccess.ReadOnly, ct);
                found.AddRange(await SearchFolderAsync(folder, user, name, filter, stageDirectory, ct));
                await folder.CloseAsync(expunge: false, ct);
            }

            await imap.DisconnectAsync(quit: true, ct);
        }

        return [.. found.OrderBy(m => m.User, StringComparer.Ordinal).ThenBy(m => m.Folder, StringComparer.Ordinal).ThenBy(m => m.InternalDate)];
    }

    private static async Task<List<FoundMessage>> SearchFolderAsync(IMailFolder folder, string user, string name, MailSearchFilter filter, string? stageDirectory, CancellationToken ct)
    {
        var query = SearchQuery.All;
        if (filter.MessageId is { } id)
        {
            query = query.And(SearchQuery.HeaderContains("Message-ID", MailSearchFilter.NormalizeMessageId(id)));
        }

        if (filter.Subject is { } subject)
        {
            query = query.And(SearchQuery.SubjectContains(subject));
        }

        if (filter.From is { } from)
        {
            query = query.And(SearchQuery.FromContains(from));
        }

        var uids = await folder.SearchAsync(query, ct);
        var result = new List<FoundMessage>();
        if (uids.Count == 0)
        {
            return result;
        }

        var items = MessageSummaryItems.UniqueId | MessageSummaryItems.Envelope | MessageSummaryItems.Flags | MessageSummaryItems.InternalDate | MessageSummaryItems.Size;
        if (filter.HasAttachment)
        {
            items |= MessageSummaryItems.BodyStructure;
        }

        foreach (var summary in await folder.FetchAsync(uids, items, ct))
        {
            var envelope = summary.Envelope;
            var internalDate = summary.InternalDate ?? DateTimeOffset.MinValue;
            var messageId = envelope?.MessageId is { Length: > 0 } mid ? $"<{mid}>" : null;
            var fromText = envelope?.From.ToString() ?? string.Empty;
            var to = envelope?.To.ToString() ?? string.Empty;
            var recipients = string.Join(", ", new[] { to, envelope?.Cc.ToString(), envelope?.Bcc.ToString() }.Where(v => !string.IsNullOrEmpty(v)));
            bool? hasAttachment = filter.HasAttachment ? summary.Attachments.Any() : null;
            if (!filter.MatchesInternalDate(internalDate)
                || !filter.MatchesHeaders(messageId, envelope?.Subject ?? string.Empty, fromText, recipients)
                || (filter.HasAttachment && hasAttachment != true))
            {
                continue;
            }

            var path = $"imap:{user}/{name};UID={summary.UniqueId.Id}";
            if (stageDirectory is not null)
            {
                path = Path.Combine(Directory.CreateDirectory(stageDirectory).FullName, $"{Guid.NewGuid():N}.eml");
                await using var source = await folder.GetStreamAsync(summary.UniqueId, string.Empty, ct);
                await using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
                await source.CopyToAsync(file, ct);
            }

            result.Add(new FoundMessage(
                user,
                name,
                path,
                internalDate,
                envelope?.Date,
                fromText,
                to,
                envelope?.Subject ?? string.Empty,
                messageId,
                (long)(summary.Size ?? 0),
                Flags(summary.Flags ?? MessageFlags.None),
                [.. summary.Keywords.Order(StringComparer.Ordinal)],
                hasAttachment));
        }

        return result;
    }

    private static List<string> Flags(MessageFlags flags)
    {
        var names = new List<string>();
        foreach (var (flag, text) in (ReadOnlySpan<(MessageFlags, string)>)[(MessageFlags.Draft, @"\Draft"), (MessageFlags.Flagged, @"\Flagged"), (MessageFlags.Answered, @"\Answered"), (MessageFlags.Seen, @"\Seen"), (MessageFlags.Deleted, @"\Deleted")])
        {
            if (flags.HasFlag(flag))
            {
                names.Add(text);
            }
        }

        return names;
    }
}
