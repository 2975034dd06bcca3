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

    /// <summary>How often a long scan says how far it got.</summary>
    private static readonly TimeSpan _progressEvery = TimeSpan.FromSeconds(5);

    private readonly string _root;
    private readonly string _maildirName;
    private readonly MailIndexCache? _index;
    private readonly TextWriter? _log;
    private int _messagesRead;

    /// <param name="root">the directory holding one home directory per user</param>
    /// <param name="index">the snapshot's header index cache: searched instead of the files, built by the first search of each user</param>
    /// <param name="log">progress of long scans and what happened to the index</param>
    public MaildirStore(string root, string maildirName = DefaultMaildirName, MailIndexCache? index = null, TextWriter? log = null)
    {
        _root = root;
        _maildirName = maildirName;
        _index = index;
        _log = log;
    }

    /// <summary>Message files opened so far (headers or whole): what the index saves.</summary>
    internal int MessagesRead => _messagesRead;

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
        var users = Users().Where(filter.MatchesUser).ToList();
        List<Candidate> candidates;
        if (_index is null)
        {
            // No index: every message of the users and folders asked for is opened (the date is
            // checked on the file's mtime first).
            candidates = [.. users.SelectMany(user => Messages(user).Where(m => filter.MatchesFolder(m.Folder)))];
        }
        else
        {
            // With an index, only what it says may match is opened, to confirm it: the file is the truth.
            candidates = [];
            foreach (var (user, entries) in await IndexesAsync(users, ct))
            {
                var maildir = Path.Combine(_root, user, _maildirName);
                candidates.AddRange(entries.Where(e => e.MayMatch(filter)).Select(e => Candidate.Of(user, e.Folder, maildir, e.RelativePath)));
            }
        }

        // Each read of a mounted view is a FUSE request, an NBD request and a read of the server's
        // store: latency, not CPU, bounds the search, so many reads are kept in flight.
        var keywords = new ConcurrentDictionary<string, IReadOnlyDictionary<int, string>>(StringComparer.Ordinal);
        var found = new ConcurrentBag<FoundMessage>();
        var progress = new Progress(_log, candidates.Count, "message(s) read");
        await Parallel.ForEachAsync(
            candidates,
            new ParallelOptions { MaxDegreeOfParallelism = ReadsInFlight, CancellationToken = ct },
            async (candidate, token) =>
            {
                var names = keywords.GetOrAdd(candidate.FolderDirectory, ReadKeywords);
                if (await ReadAsync(candidate.User, candidate.Folder, candidate.Path, names, filter, token) is { } message)
                {
                    found.Add(message);
                }

                progress.Step();
            });
        return [.. found.OrderBy(m => m.User, StringComparer.Ordinal).ThenBy(m => m.Folder, StringComparer.Ordinal).ThenBy(m => m.InternalDate).ThenBy(m => m.Path, StringComparer.Ordinal)];
    }

    /// <summary>
    /// Builds (or finds already built) the header index of every user in the store, as the first
    /// search would: the post-snapshot build (docs/adr/0012), so no search of the snapshot pays for it.
    /// </summary>
    public async Task<(int Users, long Messages)> BuildIndexAsync(CancellationToken ct)
    {
        if (_index is null)
        {
            throw new InvalidOperationException("building an index needs the snapshot's index cache");
        }

        var indexes = await IndexesAsync([.. Users()], ct);
        return (indexes.Count, indexes.Sum(i => (long)i.Entries.Count));
    }

    /// <summary>
    /// Each user's index: loaded when a usable one is cached, else built by reading the headers of
    /// every message the user has in the snapshot (all folders, any date), then saved. A user whose
    /// scan hit a read error is searched through this index but not saved, so a passing I/O error
    /// cannot hide a message from later searches.
    /// </summary>
    private async Task<List<(string User, IReadOnlyList<MailIndexEntry> Entries)>> IndexesAsync(List<string> users, CancellationToken ct)
    {
        var indexes = new List<(string User, IReadOnlyList<MailIndexEntry> Entries)>();
        var missing = new List<string>();
        foreach (var user in users)
        {
            if (_index!.TryLoad(user, out var problem) is { } entries)
            {
                indexes.Add((user, entries));
                continue;
            }

            if (problem is not null)
            {
                await WriteLogAsync($"the header index of {user} in this snapshot is not used: {problem}; rebuilding it");
            }

            missing.Add(user);
        }

        if (missing.Count == 0)
        {
            await WriteLogAsync($"header index of {users.Count} user(s) loaded from {_index!.Root}");
            return indexes;
        }

        var messages = missing.SelectMany(Messages).ToList();
        await WriteLogAsync($"indexing the headers of {messages.Count} message(s) of {missing.Count} user(s) (once per snapshot; kept in {_index!.Root})");
        var built = new ConcurrentDictionary<string, ConcurrentBag<MailIndexEntry>>(StringComparer.Ordinal);
        var failed = new ConcurrentDictionary<string, string>(StringComparer.Ordinal);
        var progress = new Progress(_log, messages.Count, "message header(s) indexed");
        await Parallel.ForEachAsync(
            messages,
            new ParallelOptions { MaxDegreeOfParallelism = ReadsInFlight, CancellationToken = ct },
            async (message, token) =>
            {
                var bag = built.GetOrAdd(message.User, _ => []);
                switch (await IndexEntryAsync(message, token))
                {
                    case (MailIndexEntry entry, _):
                        bag.Add(entry);
                        break;
                    case (null, string error):
                        failed.TryAdd(message.User, $"{message.Path}: {error}");
                        break;
                }

                progress.Step();
            });

        foreach (var user in missing)
        {
            IReadOnlyList<MailIndexEntry> entries = built.TryGetValue(user, out var bag)
                ? [.. bag.OrderBy(e => e.RelativePath, StringComparer.Ordinal)]
                : [];
            indexes.Add((user, entries));
            if (failed.TryGetValue(user, out var error))
            {
                await WriteLogAsync($"warning: the header index of {user} is not kept, since a message could not be read ({error})");
                continue;
            }

            try
            {
                _index.Save(user, entries);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await WriteLogAsync($"warning: the header index of {user} could not be saved under {_index.Root} ({e.Message}); the next search reads the files again");
            }
        }

        return indexes;
    }

    /// <summary>What the index keeps of one message; null with an error when it could not be read (null, null: not a message).</summary>
    private async Task<(MailIndexEntry? Entry, string? Error)> IndexEntryAsync(Candidate message, CancellationToken ct)
    {
        if (Stat(message.Path) is not { } info)
        {
            return (null, null);
        }

        try
        {
            var headers = await ReadHeadersAsync(message.Path, whole: false, ct);
            return (new MailIndexEntry(message.Folder, message.RelativePath, info.LastWriteTimeUtc.Ticks, headers.MessageId, headers.Subject, headers.From, headers.Recipients, headers.MaybeAttachment), null);
        }
        catch (FormatException)
        {
            // Not a message MimeKit can read, now or later: the full scan skips it too.
            return (null, null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (null, e.Message);
        }
    }

    /// <summary>Every message file of one user: each folder's cur/ and new/.</summary>
    private IEnumerable<Candidate> Messages(string user)
    {
        var maildir = Path.Combine(_root, user, _maildirName);
        foreach (var (folder, directory) in Folders(maildir))
        {
            foreach (var sub in (string[])["cur", "new"])
            {
                var messages = Path.Combine(directory, sub);
                if (Directory.Exists(messages) && !IsLink(messages))
                {
                    foreach (var file in Directory.EnumerateFiles(messages, "*", _entries).Where(f => !Path.GetFileName(f).StartsWith('.')))
                    {
                        yield return Candidate.Of(user, folder, maildir, Path.GetRelativePath(maildir, file));
                    }
                }
            }
        }
    }

    private async Task WriteLogAsync(string line)
    {
        if (_log is not null)
        {
            await _log.WriteLineAsync(line);
        }
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

    private async Task<FoundMessage?> ReadAsync(string user, string folder, string path, IReadOnlyDictionary<int, string> keywordNames, MailSearchFilter filter, CancellationToken ct)
    {
        if (Stat(path) is not { } info)
        {
            return null;
        }

        // Dovecot keeps INTERNALDATE as the file's mtime (APPEND with a date sets it).
        var internalDate = new DateTimeOffset(info.LastWriteTimeUtc, TimeSpan.Zero);
        if (!filter.MatchesInternalDate(internalDate))
        {
            return null;
        }

        Headers headers;
        try
        {
            headers = await ReadHeadersAsync(path, filter.HasAttachment, ct);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }

        if (!filter.MatchesHeaders(headers.MessageId, headers.Subject, headers.From, headers.Recipients) || (filter.HasAttachment && headers.HasAttachment != true))
        {
            return null;
        }

        var name = MaildirFileName.Parse(Path.GetFileName(path));
        return new FoundMessage(
            user,
            folder,
            path,
            internalDate,
            headers.Date,
            headers.From.Trim(),
            headers.To.Trim(),
            headers.Subject.Trim(),
            string.IsNullOrEmpty(headers.MessageId) ? null : headers.MessageId,
            name.SizeBytes ?? info.Length,
            name.Flags,
            [.. name.KeywordIndexes.Select(i => keywordNames.TryGetValue(i, out var k) ? k : null).OfType<string>()],
            headers.HasAttachment);
    }

    /// <summary>
    /// The message file, or null when it is gone, unreadable, a symbolic link (never followed) or empty:
    /// a named pipe or device node reports no length, and opening a pipe would block the search forever.
    /// </summary>
    private static FileInfo? Stat(string path)
    {
        try
        {
            var info = new FileInfo(path);
            return info.Exists && info.LinkTarget is null && info.Length > 0 ? info : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The headers a search looks at; the whole message (for HasAttachment) only when asked.</summary>
    private async Task<Headers> ReadHeadersAsync(string path, bool whole, CancellationToken ct)
    {
        Interlocked.Increment(ref _messagesRead);
        HeaderList headers;
        bool? hasAttachment = null;

        // Whole messages (attachments) are read sequentially; headers alone without read-ahead
        // (RandomAccess: POSIX_FADV_RANDOM), so a search costs about one block per message.
        await using var stream = whole
            ? new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 16384, FileOptions.Asynchronous | FileOptions.SequentialScan)
            : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, HeaderReadBytes, FileOptions.Asynchronous | FileOptions.RandomAccess);
        if (whole)
        {
            var message = await MimeMessage.LoadAsync(stream, ct);
            headers = message.Headers;
            hasAttachment = message.Attachments.Any();
        }
        else
        {
            headers = await HeaderList.LoadAsync(ParserOptions.Default, stream, ct);
        }

        var to = headers[HeaderId.To] ?? string.Empty;
        return new Headers(
            headers[HeaderId.MessageId]?.Trim(),
            headers[HeaderId.Subject] ?? string.Empty,
            headers[HeaderId.From] ?? string.Empty,
            to,
            string.Join(", ", new[] { to, headers[HeaderId.Cc], headers[HeaderId.Bcc], headers["Delivered-To"], headers["X-Original-To"] }.Where(v => !string.IsNullOrEmpty(v))),
            headers[HeaderId.Date] is { } d && DateUtils.TryParse(d, out var parsed) ? parsed : null,
            (headers[HeaderId.ContentType]?.TrimStart().StartsWith("multipart/", StringComparison.OrdinalIgnoreCase) ?? false) || headers.Contains(HeaderId.ContentDisposition),
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

    /// <param name="MaybeAttachment">the top-level headers allow an attachment: multipart, or a Content-Disposition</param>
    private readonly record struct Headers(string? MessageId, string Subject, string From, string To, string Recipients, DateTimeOffset? Date, bool MaybeAttachment, bool? HasAttachment);

    /// <param name="RelativePath">under the user's Maildir, '/'-separated</param>
    private sealed record Candidate(string User, string Folder, string Path, string RelativePath, string FolderDirectory)
    {
        public static Candidate Of(string user, string folder, string maildir, string relativePath)
        {
            var path = System.IO.Path.Combine(maildir, relativePath);

            // cur/ or new/ is the message's parent; the folder's directory (its dovecot-keywords) is above it.
            return new Candidate(user, folder, path, relativePath, System.IO.Path.GetDirectoryName(System.IO.Path.GetDirectoryName(path))!);
        }
    }

    /// <summary>"N of M ..." into the log every few seconds of a long scan, so an operator sees it move.</summary>
    private sealed class Progress(TextWriter? log, int total, string what)
    {
        private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
        private readonly Lock _gate = new();
        private TimeSpan _next = _progressEvery;
        private int _done;

        public void Step()
        {
            var done = Interlocked.Increment(ref _done);
            if (log is null || _clock.Elapsed < _next)
            {
                return;
            }

            lock (_gate)
            {
                if (_clock.Elapsed >= _next)
                {
                    _next = _clock.Elapsed + _progressEvery;
                    log.WriteLine($"{done} of {total} {what} ({_clock.Elapsed.TotalSeconds:F0} s)");
                }
            }
        }
    }
}
