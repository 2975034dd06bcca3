using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;

namespace Tidemark.Server.Events;

/// <summary>
/// The event and audit log: one JSON object per line in DATA/events.jsonl, appended and fsynced per
/// event (changes are administrator-paced, and an audit entry that a crash can lose is worth little).
/// When the file passes <see cref="MaxFileBytes"/> it becomes events.1.jsonl (replacing the older one),
/// so the log keeps between one and two files' worth of history. A line torn by a crash is skipped
/// when read and the next event starts on a fresh line.
/// </summary>
public sealed class EventLog : IDisposable
{
    public const long DefaultMaxFileBytes = 32L << 20;
    public const int MaxQueryLimit = 10_000;

    private static readonly JsonSerializerOptions LineJson = new(ApiJson.Options) { WriteIndented = false };

    private readonly Lock _lock = new();
    private readonly string _path;
    private readonly string _previousPath;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private FileStream _file;
    private long _sequence;
    private string? _head;
    private bool _disposed;

    public EventLog(string path, TimeProvider time, ILogger logger, long maxFileBytes = DefaultMaxFileBytes)
    {
        _path = Path.GetFullPath(path);
        _previousPath = Path.Combine(Path.GetDirectoryName(_path)!, Path.GetFileNameWithoutExtension(_path) + ".1" + Path.GetExtension(_path));
        _time = time;
        _logger = logger;
        MaxFileBytes = maxFileBytes;
        var previous = EventChain.Tail(_previousPath, LineJson);
        var current = EventChain.Tail(_path, LineJson);
        (_sequence, _head) = current.Hash is not null ? current : previous;
        _file = OpenForAppend(_path);
    }

    public long MaxFileBytes { get; }

    /// <summary>The sequence number of the newest event (0 when the log is empty).</summary>
    public long LastSequenceNumber
    {
        get
        {
            lock (_lock)
            {
                return _sequence;
            }
        }
    }

    /// <summary>Appends an event durably and returns it. Never throws for I/O trouble: that is logged instead, the change already happened.</summary>
    public EventDto Record(string kind, string? subject, string actor, string message, string outcome = "ok", string? remote = null)
    {
        // Subjects and messages carry what clients sent (names, paths): capped so one request cannot fill the log.
        kind = Bounded.Text(kind, 64);
        subject = Bounded.TextOrNull(subject, Bounded.MaxSubjectChars);
        actor = Bounded.Text(actor, 128);
        message = Bounded.Message(message);
        remote = Bounded.TextOrNull(remote, 64);
        lock (_lock)
        {
            var entry = new EventDto(++_sequence, _time.GetUtcNow(), kind, subject, actor, outcome, message, remote, _head);
            if (_disposed)
            {
                _logger.LogWarning("Event after the log closed (not stored): {Kind} {Subject}: {Message}", kind, subject, message);
                return entry;
            }

            try
            {
                var line = JsonSerializer.SerializeToUtf8Bytes(entry, LineJson);
                if (_file.Length + line.Length + 1 > MaxFileBytes && _file.Length > 0)
                {
                    Rotate();
                }

                _file.Write(line);
                _file.WriteByte((byte)'\n');
                _file.Flush(flushToDisk: true);
                _head = EventChain.HashOf(line);
            }
            catch (IOException ex)
            {
                _logger.LogError(ex, "Could not write event {Sequence} to {Path}", entry.Sequence, _path);
            }

            _logger.Log(
                outcome == "ok" ? LogLevel.Information : LogLevel.Warning,
                "Event {Sequence} {Kind} {Subject} by {Actor}: {Outcome}: {Message}",
                entry.Sequence,
                kind,
                subject ?? "-",
                actor,
                outcome,
                message);
            return entry;
        }
    }

    /// <summary>
    /// Events matching the filters, oldest first. With <paramref name="after"/>: the first
    /// <paramref name="limit"/> events after that sequence number (paging forward, or following the
    /// log). Without: the newest <paramref name="limit"/> matching events.
    /// </summary>
    public IReadOnlyList<EventDto> Query(long? after = null, string? kind = null, string? subject = null, DateTimeOffset? since = null, int limit = 100)
    {
        if (limit is < 1 or > MaxQueryLimit)
        {
            throw new StorageException(StorageError.InvalidArgument, $"limit must be between 1 and {MaxQueryLimit}, not {limit}");
        }

        if (after < 0)
        {
            throw new StorageException(StorageError.InvalidArgument, $"after must be a sequence number (0 or more), not {after}");
        }

        var newest = new Queue<EventDto>();
        var result = new List<EventDto>();
        lock (_lock)
        {
            // Reading under the lock keeps a rotation from moving the file away mid-read; both files are bounded.
            foreach (var entry in ReadAll())
            {
                if ((after is { } a && entry.Sequence <= a)
                    || (since is { } s && entry.Time < s)
                    || (kind is not null && !MatchesKind(entry.Kind, kind))
                    || (subject is not null && !string.Equals(entry.Subject, subject, StringComparison.Ordinal)))
                {
                    continue;
                }

                if (after is not null)
                {
                    result.Add(entry);
                    if (result.Count == limit)
                    {
                        break;
                    }
                }
                else
                {
                    newest.Enqueue(entry);
                    if (newest.Count > limit)
                    {
                        newest.Dequeue();
                    }
                }
            }
        }

        return after is not null ? result : [.. newest];
    }

    /// <summary>Checks the hash chain of both files against the last record this server wrote (see <see cref="EventChain"/>).</summary>
    public EventVerifyDto Verify()
    {
        lock (_lock)
        {
            _file.Flush();
            return EventChain.Verify([_previousPath, _path], _head, LineJson);
        }
    }

    /// <summary>"snapshot" matches "snapshot.create" and "snapshot.delete"; "snapshot.create" only itself.</summary>
    private static bool MatchesKind(string entryKind, string filter) =>
        string.Equals(entryKind, filter, StringComparison.Ordinal)
        || (entryKind.Length > filter.Length && entryKind.StartsWith(filter, StringComparison.Ordinal) && entryKind[filter.Length] == '.');

    private IEnumerable<EventDto> ReadAll()
    {
        _file.Flush();
        foreach (var path in new[] { _previousPath, _path })
        {
            if (!File.Exists(path))
            {
                continue;
            }

            using var reader = new StreamReader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete), Encoding.UTF8);
            while (reader.ReadLine() is { } line)
            {
                if (Parse(line) is { } entry)
                {
                    yield return entry;
                }
            }
        }
    }

    private static EventDto? Parse(string line)
    {
        if (line.Length == 0)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<EventDto>(line, LineJson);
        }
        catch (JsonException)
        {
            return null; // a line torn by a crash
        }
    }

    private static FileStream OpenForAppend(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows())
        {
            // The audit log says who did what: readable by the server's owner only, like the token.
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        var stream = new FileStream(path, options);
        if (stream.Length > 0)
        {
            // After a crash the last line may lack its newline: start the next event on a line of its own.
            using var check = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            check.Seek(-1, SeekOrigin.End);
            if (check.ReadByte() != '\n')
            {
                stream.WriteByte((byte)'\n');
                stream.Flush(flushToDisk: true);
            }
        }

        return stream;
    }

    private void Rotate()
    {
        _file.Flush(flushToDisk: true);
        _file.Dispose();
        File.Move(_path, _previousPath, overwrite: true);
        _file = OpenForAppend(_path);
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _file.Dispose();
        }
    }
}
