using MailKit;
using MailKit.Net.Imap;
using MailKit.Search;
using MailKit.Security;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// A mail store read through the recovery's own Dovecot (<see cref="PrivateDovecot"/>): for mdbox,
/// whose flags, keywords and received dates exist only in Dovecot's indexes. Without a header index
/// the text criteria are narrowed by IMAP SEARCH on the server, then every criterion is applied here
/// exactly as for Maildir. With one (docs/adr/0012, "mdbox index"), each user's index of the snapshot
/// (From, recipients, Subject, Message-ID, INTERNALDATE, whether an attachment is possible, and the
/// message's identity in this Dovecot: folder, UIDVALIDITY and UID) is built by one FETCH of every
/// folder on first use, and later searches FETCH only the candidates it proposes, to confirm them:
/// Dovecot's answer is the truth. An index whose UIDVALIDITY or Message-IDs no longer agree with
/// what Dovecot serves is stale and rebuilt.
/// </summary>
public sealed class DovecotMailStore : IMailStore
{
    /// <summary>The store name in the index key, so an mdbox index is never taken for a Maildir one.</summary>
    public const string IndexStoreName = "mdbox";

    private readonly PrivateDovecot _dovecot;
    private readonly MailIndexCache? _index;
    private readonly TextWriter? _log;
    private int _messagesFetched;

    public DovecotMailStore(PrivateDovecot dovecot, MailIndexCache? index = null, TextWriter? log = null)
    {
        _dovecot = dovecot;
        _index = index;
        _log = log;
    }

    /// <summary>Messages whose headers were fetched from Dovecot so far (to index or to confirm): what the index saves.</summary>
    public int MessagesFetched => _messagesFetched;

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

    /// <summary>Builds (or finds) the header index of every user: the post-snapshot build (docs/adr/0012).</summary>
    public async Task<(int Users, long Messages)> BuildIndexAsync(CancellationToken ct)
    {
        if (_index is null)
        {
            throw new InvalidOperationException("building an index needs the snapshot's index cache");
        }

        try
        {
            long messages = 0;
            foreach (var user in _dovecot.Users)
            {
                using var imap = await LoginAsync(user, ct);
                messages += (await UserIndexAsync(imap, user, rebuild: false, ct)).Count;
                await imap.DisconnectAsync(quit: true, ct);
            }

            return (_dovecot.Users.Count, messages);
        }
        catch (Exception e) when (e is AuthenticationException or ImapCommandException or ImapProtocolException or IOException or System.Net.Sockets.SocketException or FolderNotFoundException)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"the recovery's own Dovecot could not read the snapshot's store ({e.Message}); its log: {_dovecot.LogTail()}", e);
        }
    }

    private async Task<ImapClient> LoginAsync(string user, CancellationToken ct)
    {
        var imap = new ImapClient();
        try
        {
            await imap.ConnectAsync("127.0.0.1", _dovecot.Port, SecureSocketOptions.None, ct);
            await imap.AuthenticateAsync(user, _dovecot.Password, ct);
            return imap;
        }
        catch
        {
            imap.Dispose();
            throw;
        }
    }

    private async Task<IReadOnlyList<FoundMessage>> SearchCoreAsync(MailSearchFilter filter, string? stageDirectory, CancellationToken ct)
    {
        var found = new List<FoundMessage>();
        var users = _dovecot.Users.Where(filter.MatchesUser).ToList();
        var loaded = 0;
        foreach (var user in users)
        {
            using var imap = await LoginAsync(user, ct);
            if (_index is null)
            {
                foreach (var (folder, name) in await FoldersAsync(imap, ct))
                {
                    if (!filter.MatchesFolder(name))
                    {
                        continue;
                    }

                    await folder.OpenAsync(FolderAccess.ReadOnly, ct);
                    found.AddRange(await SearchFolderAsync(folder, user, name, filter, stageDirectory, ct));
                    await folder.CloseAsync(expunge: false, ct);
                }
            }
            else
            {
                var cached = _index.TryLoad(user, out var problem);
                if (problem is not null)
                {
                    await WriteLogAsync($"the header index of {user} in this snapshot is not used: {problem}; rebuilding it");
                }

                loaded += cached is null ? 0 : 1;
                var entries = cached ?? await UserIndexAsync(imap, user, rebuild: true, ct);
                if (await ConfirmAsync(imap, user, entries, filter, stageDirectory, ct) is { } confirmed)
                {
                    found.AddRange(confirmed);
                }
                else
                {
                    // The index does not describe what this Dovecot serves (a rebuilt mailbox): build it again, once.
                    await WriteLogAsync($"the header index of {user} in this snapshot is stale (UIDVALIDITY or Message-ID differ); rebuilding it");
                    entries = await UserIndexAsync(imap, user, rebuild: true, ct);
                    found.AddRange(await ConfirmAsync(imap, user, entries, filter, stageDirectory, ct) ?? throw new RecoveryException(RecoveryFailure.BadInput, $"the private Dovecot changes {user}'s mailboxes between two reads; search with --no-index"));
                }
            }

            await imap.DisconnectAsync(quit: true, ct);
        }

        if (_index is not null && loaded > 0)
        {
            await WriteLogAsync($"header index of {loaded} user(s) loaded from {_index.Root}; {_messagesFetched} candidate message(s) fetched to confirm");
        }

        return [.. found.OrderBy(m => m.User, StringComparer.Ordinal).ThenBy(m => m.Folder, StringComparer.Ordinal).ThenBy(m => m.InternalDate)];
    }

    /// <summary>Every selectable folder of the user, INBOX first, with its name as the filter sees it ("A/B").</summary>
    private static async Task<List<(IMailFolder Folder, string Name)>> FoldersAsync(ImapClient imap, CancellationToken ct)
    {
        var personal = imap.PersonalNamespaces[0];
        var folders = (await imap.GetFoldersAsync(personal, subscribedOnly: false, ct)).ToList();
        if (!folders.Any(f => f.FullName == imap.Inbox.FullName))
        {
            folders.Insert(0, imap.Inbox);
        }

        return [.. folders
            .Where(f => !f.Attributes.HasFlag(FolderAttributes.NoSelect) && !f.Attributes.HasFlag(FolderAttributes.NonExistent))
            .Select(f => (f, f == imap.Inbox || f.FullName == imap.Inbox.FullName ? "INBOX" : f.FullName.Replace(personal.DirectorySeparator, '/')))];
    }

    /// <summary>
    /// The user's index: loaded when usable (unless <paramref name="rebuild"/>), else one FETCH of
    /// every message of every folder, saved. Entries name a message as "UIDVALIDITY/UID" in their folder.
    /// </summary>
    private async Task<IReadOnlyList<MailIndexEntry>> UserIndexAsync(ImapClient imap, string user, bool rebuild, CancellationToken ct)
    {
        if (!rebuild && _index!.TryLoad(user, out _) is { } existing)
        {
            return existing;
        }

        var entries = new List<MailIndexEntry>();
        foreach (var (folder, name) in await FoldersAsync(imap, ct))
        {
            await folder.OpenAsync(FolderAccess.ReadOnly, ct);
            if (folder.Count > 0)
            {
                var summaries = await folder.FetchAsync(0, -1, MessageSummaryItems.UniqueId | MessageSummaryItems.Envelope | MessageSummaryItems.InternalDate | MessageSummaryItems.BodyStructure, ct);
                Interlocked.Add(ref _messagesFetched, summaries.Count);
                entries.AddRange(summaries.Select(s =>
                {
                    var (messageId, subject, from, recipients) = Describe(s.Envelope);

                    // As for Maildir: the top level allows an attachment (multipart, or a disposition).
                    var maybeAttachment = s.Body is BodyPartMultipart || s.Body is BodyPartBasic { ContentDisposition: not null };
                    return new MailIndexEntry(name, $"{folder.UidValidity}/{s.UniqueId.Id}", (s.InternalDate ?? DateTimeOffset.MinValue).UtcTicks, messageId, subject, from, recipients, maybeAttachment);
                }));
            }

            await folder.CloseAsync(expunge: false, ct);
        }

        await WriteLogAsync($"indexed the headers of {entries.Count} message(s) of {user} (once per snapshot; kept in {_index!.Root})");
        try
        {
            _index.Save(user, entries);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            await WriteLogAsync($"warning: the header index of {user} could not be saved under {_index.Root} ({e.Message}); the next search fetches every header again");
        }

        return entries;
    }

    /// <summary>The index's candidates, fetched and matched again; null when the index is stale for this Dovecot.</summary>
    private async Task<List<FoundMessage>?> ConfirmAsync(ImapClient imap, string user, IReadOnlyList<MailIndexEntry> entries, MailSearchFilter filter, string? stageDirectory, CancellationToken ct)
    {
        var found = new List<FoundMessage>();
        var folders = (await FoldersAsync(imap, ct)).ToDictionary(f => f.Name, f => f.Folder, StringComparer.Ordinal);
        foreach (var group in entries.Where(e => e.MayMatch(filter)).GroupBy(e => e.Folder, StringComparer.Ordinal))
        {
            if (!folders.TryGetValue(group.Key, out var folder))
            {
                return null;
            }

            await folder.OpenAsync(FolderAccess.ReadOnly, ct);
            var expected = new Dictionary<uint, string?>();
            foreach (var entry in group)
            {
                var parts = entry.RelativePath.Split('/');
                if (parts.Length != 2 || !uint.TryParse(parts[0], out var validity) || validity != folder.UidValidity || !uint.TryParse(parts[1], out var uid))
                {
                    return null;
                }

                expected[uid] = entry.MessageId;
            }

            var matches = await FetchMatchesAsync(folder, [.. expected.Keys.Select(u => new UniqueId(u))], user, group.Key, filter, stageDirectory, expected, ct);
            await folder.CloseAsync(expunge: false, ct);
            if (matches is null)
            {
                return null;
            }

            found.AddRange(matches);
        }

        return found;
    }

    private async Task<List<FoundMessage>> SearchFolderAsync(IMailFolder folder, string user, string name, MailSearchFilter filter, string? stageDirectory, CancellationToken ct)
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
        return uids.Count == 0 ? [] : (await FetchMatchesAsync(folder, uids, user, name, filter, stageDirectory, null, ct))!;
    }

    private static (string? MessageId, string Subject, string From, string Recipients) Describe(Envelope? envelope)
    {
        var to = envelope?.To.ToString() ?? string.Empty;
        return (
            envelope?.MessageId is { Length: > 0 } mid ? $"<{mid}>" : null,
            envelope?.Subject ?? string.Empty,
            envelope?.From.ToString() ?? string.Empty,
            string.Join(", ", new[] { to, envelope?.Cc.ToString(), envelope?.Bcc.ToString() }.Where(v => !string.IsNullOrEmpty(v))));
    }

    /// <summary>
    /// Fetches <paramref name="uids"/> and keeps those that match; with <paramref name="expected"/>
    /// (the index's Message-ID of each UID), null when one is missing or another message: the index is stale.
    /// </summary>
    private async Task<List<FoundMessage>?> FetchMatchesAsync(IMailFolder folder, IList<UniqueId> uids, string user, string name, MailSearchFilter filter, string? stageDirectory, Dictionary<uint, string?>? expected, CancellationToken ct)
    {
        var result = new List<FoundMessage>();
        var items = MessageSummaryItems.UniqueId | MessageSummaryItems.Envelope | MessageSummaryItems.Flags | MessageSummaryItems.InternalDate | MessageSummaryItems.Size;
        if (filter.HasAttachment)
        {
            items |= MessageSummaryItems.BodyStructure;
        }

        var summaries = await folder.FetchAsync(uids, items, ct);
        Interlocked.Add(ref _messagesFetched, summaries.Count);
        if (expected is not null && (summaries.Count != expected.Count || summaries.Any(s => !expected.TryGetValue(s.UniqueId.Id, out var id) || id != Describe(s.Envelope).MessageId)))
        {
            return null;
        }

        foreach (var summary in summaries)
        {
            var envelope = summary.Envelope;
            var internalDate = summary.InternalDate ?? DateTimeOffset.MinValue;
            var (messageId, _, fromText, recipients) = Describe(envelope);
            var to = envelope?.To.ToString() ?? string.Empty;
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

    private async Task WriteLogAsync(string line)
    {
        if (_log is not null)
        {
            await _log.WriteLineAsync(line);
        }
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
