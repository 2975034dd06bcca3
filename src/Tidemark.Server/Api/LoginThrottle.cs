namespace Tidemark.Server.Api;

/// <summary>
/// Failed API logins per source address: a growing delay before each refusal (guessing a token gets
/// slower the more one guesses) and a summary to report now and then instead of one line per attempt.
/// The table is bounded: when it is full of recent sources, new sources share one overflow entry, so a
/// client with many addresses costs bounded memory and is throttled as one.
/// </summary>
public sealed class LoginThrottle
{
    public const int DefaultMaxSources = 4096;

    /// <summary>A source with no failure for this long starts over.</summary>
    public static readonly TimeSpan ForgetAfter = TimeSpan.FromMinutes(10);

    /// <summary>One report per source per interval, carrying the count of failures since the last one.</summary>
    public static readonly TimeSpan ReportInterval = TimeSpan.FromMinutes(1);

    /// <summary>A mistyped token or two costs nothing; from the fourth failure on each one waits longer.</summary>
    public const int FreeFailures = 3;

    public static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(100);

    public static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(5);

    private const string Overflow = "(other sources)";

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Source> _sources = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly int _maxSources;

    // Many sources could each report once per interval; all together report at most this many per
    // interval. A fixed window on the injected clock (not System.Threading.RateLimiting's, which runs
    // on its own timer) so tests can drive it.
    private readonly int _maxReportsPerInterval;
    private DateTimeOffset _windowStart = DateTimeOffset.MinValue;
    private int _reportsInWindow;
    private long _unreportedElsewhere;

    public LoginThrottle(TimeProvider time, int maxSources = DefaultMaxSources, int maxReportsPerInterval = 20)
    {
        _time = time;
        _maxSources = maxSources;
        _maxReportsPerInterval = maxReportsPerInterval;
    }

    public int TrackedSources
    {
        get
        {
            lock (_lock)
            {
                return _sources.Count;
            }
        }
    }

    /// <summary>What to do about one failed login.</summary>
    /// <param name="Delay">How long to wait before answering.</param>
    /// <param name="Failures">Consecutive failures of this source (or of the overflow entry).</param>
    /// <param name="Report">Failures to report now (this one included), or 0 to stay quiet.</param>
    /// <param name="Source">The key it was counted under (the address, or the overflow entry).</param>
    public readonly record struct Decision(TimeSpan Delay, int Failures, long Report, string Source);

    public Decision Failed(string source)
    {
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            var key = KeyFor(source, now);
            var state = _sources.TryGetValue(key, out var s) && now - s.LastFailure < ForgetAfter ? s : new Source(0, now, 0, DateTimeOffset.MinValue);
            state = state with { Failures = state.Failures + 1, LastFailure = now, Unreported = state.Unreported + 1 };
            long report = 0;
            if (now - state.LastReport >= ReportInterval)
            {
                if (now - _windowStart >= ReportInterval)
                {
                    _windowStart = now;
                    _reportsInWindow = 0;
                }

                if (_reportsInWindow < _maxReportsPerInterval)
                {
                    _reportsInWindow++;
                    report = state.Unreported + _unreportedElsewhere;
                    _unreportedElsewhere = 0;
                    state = state with { Unreported = 0, LastReport = now };
                }
                else
                {
                    // Reported later, by whichever source next gets a report through.
                    _unreportedElsewhere += state.Unreported;
                    state = state with { Unreported = 0 };
                }
            }

            _sources[key] = state;
            return new Decision(DelayFor(state.Failures), state.Failures, report, key);
        }
    }

    /// <summary>A right token from this source: it starts over.</summary>
    public void Succeeded(string source)
    {
        lock (_lock)
        {
            _sources.Remove(source);
        }
    }

    public static TimeSpan DelayFor(int failures)
    {
        if (failures <= FreeFailures)
        {
            return TimeSpan.Zero;
        }

        var doublings = Math.Min(failures - FreeFailures - 1, 16);
        var delay = FirstDelay * (1L << doublings);
        return delay < MaxDelay ? delay : MaxDelay;
    }

    private string KeyFor(string source, DateTimeOffset now)
    {
        if (_sources.ContainsKey(source) || _sources.Count < _maxSources)
        {
            return source;
        }

        // Full: drop the sources that were forgotten anyway, and share one entry if that does not help.
        foreach (var (key, state) in _sources)
        {
            if (now - state.LastFailure >= ForgetAfter)
            {
                _sources.Remove(key);
            }
        }

        return _sources.Count < _maxSources ? source : Overflow;
    }

    private readonly record struct Source(int Failures, DateTimeOffset LastFailure, long Unreported, DateTimeOffset LastReport);
}
