using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;

namespace Tidemark.Server.Events;

/// <summary>
/// The event and audit log: two hash-chained logs of one JSON object per line, appended and fsynced per
/// event (changes are administrator-paced, and an audit entry that a crash can lose is worth little).
/// Real history (every change, every failure of a security-relevant request, everything the server
/// does on its own) goes to DATA/events.jsonl, kept as <see cref="MainGenerations"/> files of
/// <see cref="MaxFileBytes"/>. Noise (see <see cref="RecordRefused"/>) goes to DATA/events-refused.jsonl,
/// a smaller log of its own, so no flood of refused requests can rotate real history out. A line torn
/// by a crash is skipped when read and the next event starts on a fresh line.
/// </summary>
public sealed class EventLog : IDisposable
{
    public const long DefaultMaxFileBytes = 32L << 20;
    public const long DefaultRefusedMaxFileBytes = 8L << 20;
    public const int MainGenerations = 4;
    public const int RefusedGenerations = 2;
    public const int MaxQueryLimit = 10_000;

    /// <summary>The values of <see cref="EventDto.Log"/> and of the <c>log</c> filter.</summary>
    public const string MainLog = "main";
    public const string RefusedLog = "refused";

    private static readonly JsonSerializerOptions LineJson = new(ApiJson.Options) { WriteIndented = false };

    private readonly Lock _lock = new();
    private readonly EventFile _main;
    private readonly EventFile _refused;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private bool _disposed;

    // The newest main-log events, for Recent: null until first asked (then filled by one scan of the
    // log), kept current by Append after that, so the console's dashboard never rescans the files.
    private Queue<EventDto>? _recent;

    public EventLog(string path, TimeProvider time, ILogger logger, long maxFileBytes = DefaultMaxFileBytes, long refusedMaxFileBytes = DefaultRefusedMaxFileBytes)
    {
        var full = Path.GetFullPath(path);
        _time = time;
        _logger = logger;
        _main = new EventFile(full, MainGenerations, maxFileBytes, LineJson);
        _refused = new EventFile(
            Path.Combine(Path.GetDirectoryName(full)!, Path.GetFileNameWithoutExtension(full) + "-refused" + Path.GetExtension(full)),
            RefusedGenerations,
            refusedMaxFileBytes,
            LineJson);
    }

    public long MaxFileBytes => _main.MaxFileBytes;

    /// <summary>The sequence number of the newest event in the main log (0 when it is empty).</summary>
    public long LastSequenceNumber
    {
        get
        {
            lock (_lock)
            {
                return _main.Sequence;
            }
        }
    }

    /// <summary>How many of the newest main-log events <see cref="Recent"/> keeps in memory.</summary>
    public const int RecentCapacity = 100;

    /// <summary>
    /// The newest <paramref name="limit"/> (at most <see cref="RecentCapacity"/>) events of the main
    /// log, oldest first, as <see cref="Query"/> without filters and with log "main" would return
    /// them, but from memory: a scan of up to 128 MiB of log on every dashboard load is what this avoids.
    /// </summary>
    public IReadOnlyList<EventDto> Recent(int limit)
    {
        limit = Math.Clamp(limit, 1, RecentCapacity);
        lock (_lock)
        {
            _recent ??= new Queue<EventDto>(Newest(_main, MainLog, null, null, null, RecentCapacity));
            return [.. _recent.Skip(Math.Max(0, _recent.Count - limit))];
        }
    }

    /// <summary>Appends an event to the main log durably and returns it. Never throws for I/O trouble: that is logged instead, the change already happened.</summary>
    public EventDto Record(string kind, string? subject, string actor, string message, string outcome = "ok", string? remote = null) =>
        Append(_main, MainLog, kind, subject, actor, message, outcome, remote);

    /// <summary>
    /// Appends noise to the refused log: <c>auth.failed</c> summaries and failed requests that
    /// <see cref="AuditMiddleware.IsNoise"/> classes as such. Never successful changes, never token,
    /// partner or permission events: those stay in the main log.
    /// </summary>
    public EventDto RecordRefused(string kind, string? subject, string actor, string message, string outcome = "failed", string? remote = null) =>
        Append(_refused, RefusedLog, kind, subject, actor, message, outcome, remote);

    private EventDto Append(EventFile file, string log, string kind, string? subject, string actor, string message, string outcome, string? remote)
    {
        // Subjects and messages carry what clients sent (names, paths): capped so one request cannot fill the log.
        kind = Bounded.Text(kind, 64);
        subject = Bounded.TextOrNull(subject, Bounded.MaxSubjectChars);
        actor = Bounded.Text(actor, 128);
        message = Bounded.Message(message);
        remote = Bounded.TextOrNull(remote, 64);
        lock (_lock)
        {
            var entry = new EventDto(file.NextSequence(), _time.GetUtcNow(), kind, subject, actor, outcome, message, remote, file.Head);
            if (_disposed)
            {
                EventsLog.EventAfterClose(_logger, kind, subject, message);
                return entry with { Log = log };
            }

            try
            {
                // Stored without its log's name (the file says it); Query adds it.
                file.Append(JsonSerializer.SerializeToUtf8Bytes(entry, LineJson));
                if (file == _main && _recent is not null)
                {
                    _recent.Enqueue(entry with { Log = log });
                    if (_recent.Count > RecentCapacity)
                    {
                        _recent.Dequeue();
                    }
                }
            }
            catch (IOException ex)
            {
                EventsLog.EventNotWritten(_logger, ex, entry.Sequence, file.Path);
            }

            EventsLog.Event(
                _logger,
                outcome == "ok" ? LogLevel.Information : LogLevel.Warning,
                log,
                entry.Sequence,
                kind,
                subject ?? "-",
                actor,
                outcome,
                message);
            return entry with { Log = log };
        }
    }

    /// <summary>
    /// Events matching the filters, oldest first, each naming its <see cref="EventDto.Log"/>. Sequence
    /// numbers count per log. With <paramref name="after"/>: the first <paramref name="limit"/> events
    /// of one log after that sequence number (paging forward, or following): the main log unless
    /// <paramref name="log"/> says "refused". Without: the newest <paramref name="limit"/> matching
    /// events of both logs (or the one <paramref name="log"/> names), merged in time order.
    /// </summary>
    public IReadOnlyList<EventDto> Query(long? after = null, string? kind = null, string? subject = null, DateTimeOffset? since = null, int limit = 100, string? log = null)
    {
        if (limit is < 1 or > MaxQueryLimit)
        {
            throw new StorageException(StorageError.InvalidArgument, $"limit must be between 1 and {MaxQueryLimit}, not {limit}");
        }

        if (after < 0)
        {
            throw new StorageException(StorageError.InvalidArgument, $"after must be a sequence number (0 or more), not {after}");
        }

        if (log is not null and not MainLog and not RefusedLog)
        {
            throw new StorageException(StorageError.InvalidArgument, $"log must be '{MainLog}' (real history) or '{RefusedLog}' (refused requests), not '{Bounded.Text(log, 64)}'");
        }

        lock (_lock)
        {
            // Reading under the lock keeps a rotation from moving a file away mid-read; every file is bounded.
            if (after is not null)
            {
                return log == RefusedLog
                    ? Page(_refused, RefusedLog, after.Value, kind, subject, since, limit)
                    : Page(_main, MainLog, after.Value, kind, subject, since, limit);
            }

            var main = log == RefusedLog ? [] : Newest(_main, MainLog, kind, subject, since, limit);
            var refused = log == MainLog ? [] : Newest(_refused, RefusedLog, kind, subject, since, limit);

            // Each list is in time order; OrderBy is stable, so on equal times the main log comes first.
            return [.. main.Concat(refused).OrderBy(e => e.Time).TakeLast(limit)];
        }
    }

    /// <summary>Checks the hash chain of every file of both logs against the last record this server wrote to each (see <see cref="EventChain"/>).</summary>
    public EventVerifyDto Verify()
    {
        lock (_lock)
        {
            var main = _main.Verify();
            var refused = _refused.Verify();
            return main with
            {
                Ok = main.Ok && refused.Ok,
                Problems = [.. main.Problems.Select(p => p with { Log = MainLog }), .. refused.Problems.Select(p => p with { Log = RefusedLog })],
                Refused = refused with { Problems = [.. refused.Problems.Select(p => p with { Log = RefusedLog })] },
            };
        }
    }

    private static bool Matches(EventDto entry, string? kind, string? subject, DateTimeOffset? since) =>
        !((since is { } s && entry.Time < s)
          || (kind is not null && !MatchesKind(entry.Kind, kind))
          || (subject is not null && !string.Equals(entry.Subject, subject, StringComparison.Ordinal)));

    private static List<EventDto> Page(EventFile file, string log, long after, string? kind, string? subject, DateTimeOffset? since, int limit)
    {
        var result = new List<EventDto>();
        foreach (var entry in file.ReadAll())
        {
            if (entry.Sequence > after && Matches(entry, kind, subject, since))
            {
                result.Add(entry with { Log = log });
                if (result.Count == limit)
                {
                    break;
                }
            }
        }

        return result;
    }

    private static List<EventDto> Newest(EventFile file, string log, string? kind, string? subject, DateTimeOffset? since, int limit)
    {
        var newest = new Queue<EventDto>();
        foreach (var entry in file.ReadAll())
        {
            if (Matches(entry, kind, subject, since))
            {
                newest.Enqueue(entry with { Log = log });
                if (newest.Count > limit)
                {
                    newest.Dequeue();
                }
            }
        }

        return [.. newest];
    }

    /// <summary>"snapshot" matches "snapshot.create" and "snapshot.delete"; "snapshot.create" only itself.</summary>
    private static bool MatchesKind(string entryKind, string filter) =>
        string.Equals(entryKind, filter, StringComparison.Ordinal)
        || (entryKind.Length > filter.Length && entryKind.StartsWith(filter, StringComparison.Ordinal) && entryKind[filter.Length] == '.');

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _main.Dispose();
            _refused.Dispose();
        }
    }
}
