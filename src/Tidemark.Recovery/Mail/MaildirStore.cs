using System.Collections.Concurrent;
using MimeKit;
using MimeKit.Utils;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// Reads a Maildir++ mail store in a mounted snapshot without any mail server (docs/adr/0012):
/// ROOT/USER/Maildir/{cur,new} is INBOX, ROOT/USER/Maildir/.A.B/{cur,new} is folder "A/B" (names in
/// modified UTF-7). Flags and keywords come from the file name, INTERNALDATE from the file's mtime.
/// Only cur/ and new/ are read (an expunged message lingers in Dovecot's index cache, which is not
/// the truth). The store is hostile: symbolic links are never followed, unreadable entries are
/// skipped, and only headers are parsed unless the filter needs the MIME structure.
/// </summary>
public sealed class MaildirStore : IMailStore
{
    public const string DefaultMaildirName = "Maildir";

    private static readonly EnumerationOptions _entries = new()
    {
        AttributesToSkip = FileAttributes.ReparsePoint,
        IgnoreInaccessible = true,
        RecurseSubdirectories = false,
        ReturnSpecialDirectories = false,
    };

    /// <summary>Message files read at once (bench/recovery: 8 left the NBD link idle most of the time).</summary>
    internal const int ReadsInFlight = 32;

    /// <summary>
    /// What a header-only read asks for at a time: headers are a few KiB, and a larger buffer (or the
    /// kernel's read-ahead) would fetch the body from the view too, for every message searched.
    /// </summary>
    internal const int HeaderReadBytes = 4096;

    private readonly string _root;
    private readonly string _maildirName;

    /// <param name="root">the directory holding one home directory per user</param>
    public MaildirStore(string root, string maildirName = DefaultMaildirName)
    {
        _root = root;
        _maildirName = maildirName;
    }

    /// <summary>Users with a Maildir in the store, sorted.</summary>
    public IReadOnlyList<string> Users()
    {
        if (!Directory.Exists(_root) || IsLink(_root))
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"{_root} is not a directory in the snapshot's file system; --mail-root must name the directory that holds the users' home directories");
        }

        return [.. Directory.EnumerateDirectories(_root, "*", _entries)
            .Where(home => Directory.Exists(Path.Combine(home, _maildirName)) && !IsLink(Path.Combine(home, _maildirName)))
            .Select(Path.GetFileName)
            .OfType<string>()
            .Order(StringComparer.Ordinal)];
    }

    /// <summary>Every message that matches, sorted by user, folder and INTERNALDATE.</summary>
    public Task<IReadOnlyList<FoundMessage>> SearchAsync(MailSearchFilter filter, CancellationToken ct) => SearchAsync(filter, null, ct);

    /// <summary>Maildir messages are files already: nothing is staged.</summary>
    public async Task<IReadOnlyList<FoundMessage>> SearchAsync(MailSearchFilter filter, string? stageDirectory, CancellationToken ct)
    {
        var candidates = new List<(string User, string Folder, string Path, IReadOnlyDictionary<int, string> Keywords)>();
        foreach (var user in Users().Where(filter.MatchesUser))
        {
            foreach (var (folder, directory) in Folders(Path.Combine(_root, user, _maildirName)))
            {
                if (!filter.MatchesFolder(folder))
                {
                    continue;
                }

                var keywords = ReadKeywords(directory);
                foreach (var sub in (string[])["cur", "new"])
                {
                    var messages = Path.Combine(directory, sub);
                    if (Directory.Exists(messages) && !IsLink(messages))
                    {
                        candidates.AddRange(Directory.EnumerateFiles(messages, "*", _entries)
                            .Where(f => !Path.GetFileName(f).StartsWith('.'))
                            .Select(f => (user, folder, f, keywords)));
                    }
                }
            }
        }

        // Each read of a mounted view is a FUSE request, an NBD request and a read of the server's
        // store: latency, not CPU, bounds the search, so many reads are kept in flight.
        var found = new ConcurrentBag<FoundMessage>();
        await Parallel.ForEachAsync(
            candidates,
            new ParallelOptions { MaxDegreeOfParallelism = ReadsInFlight, CancellationToken = ct },
            async (candidate, token) =>
            {
                if (await ReadAsync(candidate.User, candidate.Folder, candidate.Path, candidate.Keywords, filter, token) is { } message)
                {
                    found.Add(message);
                }
            });
        return [.. found.OrderBy(m => m.User, StringComparer.Ordinal).ThenBy(m => m.Folder, StringComparer.Ordinal).ThenBy(m => m.InternalDate).ThenBy(m => m.Path, StringComparer.Ordinal)];
    }

    /// <summary>Folders of one Maildir++ directory: itself as INBOX, then each ".Name" subdirectory.</summary>
    internal static IEnumerable<(string Folder, string Directory)> Folders(string maildir)
    {
        yield return ("INBOX", maildir);
        foreach (var directory in Directory.EnumerateDirectories(maildir, ".*", _entries).Order(StringComparer.Ordinal))
        {
            var name = Path.GetFileName(directory);
            if (name.Length > 1 && name != ".." && (Directory.Exists(Path.Combine(directory, "cur")) || Directory.Exists(Path.Combine(directory, "new"))))
            {
                yield return (string.Join('/', name[1..].Split('.').Select(ModifiedUtf7.Decode)), directory);
            }
        }
    }

    private static async Task<FoundMessage?> ReadAsync(string user, string folder, string path, IReadOnlyDictionary<int, string> keywordNames, MailSearchFilter filter, CancellationToken ct)
    {
        FileInfo info;
        try
        {
            info = new FileInfo(path);
            if (!info.Exists || info.LinkTarget is not null)
            {
                return null;
            }
        }
        catch (IOException)
        {
            return null;
        }

        // Dovecot keeps INTERNALDATE as the file's mtime (APPEND with a date sets it).
        var internalDate = new DateTimeOffset(info.LastWriteTimeUtc, TimeSpan.Zero);
        if (!filter.MatchesInternalDate(internalDate))
        {
            return null;
        }

        HeaderList headers;
        bool? hasAttachment = null;
        try
        {
            // Whole messages (attachments) are read sequentially; headers alone without read-ahead
            // (RandomAccess: POSIX_FADV_RANDOM), so a search costs about one block per message.
            await using var stream = filter.HasAttachment
                ? new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 16384, FileOptions.Asynchronous | FileOptions.SequentialScan)
                : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, HeaderReadBytes, FileOptions.Asynchronous | FileOptions.RandomAccess);
            if (filter.HasAttachment)
            {
                var message = await MimeMessage.LoadAsync(stream, ct);
                headers = message.Headers;
                hasAttachment = message.Attachments.Any();
            }
            else
            {
                headers = await HeaderList.LoadAsync(ParserOptions.Default, stream, ct);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }

        var messageId = headers[HeaderId.MessageId]?.Trim();
        var subject = headers[HeaderId.Subject] ?? string.Empty;
        var from = headers[HeaderId.From] ?? string.Empty;
        var to = headers[HeaderId.To] ?? string.Empty;
        var recipients = string.Join(", ", new[] { to, headers[HeaderId.Cc], headers[HeaderId.Bcc], headers["Delivered-To"], headers["X-Original-To"] }.Where(v => !string.IsNullOrEmpty(v)));
        if (!filter.MatchesHeaders(messageId, subject, from, recipients) || (filter.HasAttachment && hasAttachment != true))
        {
            return null;
        }

        var name = MaildirFileName.Parse(Path.GetFileName(path));
        DateTimeOffset? date = headers[HeaderId.Date] is { } d && DateUtils.TryParse(d, out var parsed) ? parsed : null;
        return new FoundMessage(
            user,
            folder,
            path,
            internalDate,
            date,
            from.Trim(),
            to.Trim(),
            subject.Trim(),
            string.IsNullOrEmpty(messageId) ? null : messageId,
            name.SizeBytes ?? info.Length,
            name.Flags,
            [.. name.KeywordIndexes.Select(i => keywordNames.TryGetValue(i, out var k) ? k : null).OfType<string>()],
            hasAttachment);
    }

    private static IReadOnlyDictionary<int, string> ReadKeywords(string folderDirectory)
    {
        var file = Path.Combine(folderDirectory, "dovecot-keywords");
        try
        {
            return File.Exists(file) && new FileInfo(file).LinkTarget is null
                ? MaildirFileName.ParseKeywords(File.ReadLines(file).Take(64))
                : new Dictionary<int, string>();
        }
        catch (IOException)
        {
            return new Dictionary<int, string>();
        }
    }

    private static bool IsLink(string path) => new DirectoryInfo(path).LinkTarget is not null;
}
