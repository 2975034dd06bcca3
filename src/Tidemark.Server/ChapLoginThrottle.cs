using System.Net;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server;

/// <summary>
/// Slows down password guessing (iSCSI CHAP) per source address: after each failed login from an
/// address, its next connections wait before they are served, twice as long per failure (from
/// <see cref="FirstDelay"/> to <see cref="MaxDelay"/>), on a timer rather than a thread. An address
/// is forgiven after <see cref="ForgetAfter"/> without failures. Failures are logged at Warning,
/// at most one line per <see cref="ConnectionAdmission.LogInterval"/> with a count of the others.
/// </summary>
internal sealed partial class ChapLoginThrottle(string protocol, ILogger logger, TimeProvider? time = null)
{
    public static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(250);
    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(30);
    public static readonly TimeSpan ForgetAfter = TimeSpan.FromMinutes(15);

    // Bounds the table under a flood of failures from many addresses; the oldest entries go first.
    private const int MaxSources = 65536;

    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly object _lock = new();
    private readonly Dictionary<IPAddress, (int Failures, DateTimeOffset Last)> _sources = [];
    private readonly ConnectionAdmission.RateLimitedCount _log = new();
    private long _failures;
    private long _delayed;

    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Connections that waited because their address had failed logins.</summary>
    public long Delayed => Interlocked.Read(ref _delayed);

    /// <summary>How long a new connection from <paramref name="source"/> waits before it is served (zero for most).</summary>
    public TimeSpan DelayFor(IPAddress? source)
    {
        if (source is null)
        {
            return TimeSpan.Zero;
        }

        lock (_lock)
        {
            if (!_sources.TryGetValue(source, out var entry))
            {
                return TimeSpan.Zero;
            }

            if (_time.GetUtcNow() - entry.Last > ForgetAfter)
            {
                _sources.Remove(source);
                return TimeSpan.Zero;
            }

            Interlocked.Increment(ref _delayed);
            return Delay(entry.Failures);
        }
    }

    /// <summary>Counts a failed login from <paramref name="source"/> and logs it (rate-limited).</summary>
    public void Failed(IPAddress? source, EndPoint? remote, string? initiator, string? target, string reason)
    {
        Interlocked.Increment(ref _failures);
        var failures = 1;
        if (source is not null)
        {
            lock (_lock)
            {
                if (_sources.Count >= MaxSources && !_sources.ContainsKey(source))
                {
                    var oldest = _sources.MinBy(e => e.Value.Last).Key;
                    _sources.Remove(oldest);
                }

                var now = _time.GetUtcNow();
                failures = _sources.TryGetValue(source, out var entry) && now - entry.Last <= ForgetAfter ? entry.Failures + 1 : 1;
                _sources[source] = (failures, now);
            }
        }

        if (_log.ShouldLog(out var since))
        {
            LogFailure(logger, protocol, remote?.ToString() ?? "unknown", Shorten(initiator), Shorten(target), reason, failures, Delay(failures).TotalSeconds, since);
        }
    }

    /// <summary>The wait after <paramref name="failures"/> failures: 250 ms, 500 ms, 1 s ... 30 s.</summary>
    public static TimeSpan Delay(int failures) =>
        failures <= 0 ? TimeSpan.Zero : TimeSpan.FromMilliseconds(Math.Min(MaxDelay.TotalMilliseconds, FirstDelay.TotalMilliseconds * Math.Pow(2, Math.Min(failures - 1, 20))));

    // Names come from the wire: a log line carries at most a bounded, printable part of them.
    private static string Shorten(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "-";
        }

        var cut = name.Length > 100 ? name[..100] + "..." : name;
        return string.Concat(cut.Select(c => char.IsControl(c) ? '?' : c));
    }

    [LoggerMessage(EventId = 1210, Level = LogLevel.Warning, Message = "{Protocol} login from {Remote} (initiator {Initiator}, target {Target}) failed: {Reason}; {Failures} failures from this address, its next connections wait {Delay:F2} s; {Count} failed logins in all since the last such line")]
    private static partial void LogFailure(ILogger logger, string protocol, string remote, string initiator, string target, string reason, int failures, double delay, long count);
}
