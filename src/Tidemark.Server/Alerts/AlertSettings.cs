using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;
using Tidemark.Server.Events;

namespace Tidemark.Server.Alerts;

/// <summary>
/// The alert thresholds in force (ADR 0016): the config file's values (alertStalledJob, alertRpo;
/// the pool-full share has no config setting) until an admin sets them through the API
/// (PUT /api/v1/alerts/thresholds, `tidemark alerts thresholds`), then the values kept in the pool
/// as one control record (kind "alert-thresholds", ADR 0011), which win over the file from then on,
/// across restarts, and travel with a copy of the pool. Validated here, once, for every door.
/// </summary>
public sealed class AlertSettings
{
    public const int MinPoolFullPercent = 1;
    public const int MaxPoolFullPercent = 100;

    /// <summary>The shortest stall or RPO accepted: below it every busy second would raise an alert.</summary>
    public static readonly TimeSpan MinSpan = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The longest stall or RPO accepted: a month. A weekly or monthly DR copy has an RPO of days, so
    /// a day (the duration parser's default bound) was too short; past a month an alert no longer
    /// tells anyone anything in time.
    /// </summary>
    public static readonly TimeSpan MaxSpan = TimeSpan.FromDays(30);

    /// <summary>Version 1: <see cref="AlertThresholdsRecord"/>, one record named <see cref="RecordName"/>.</summary>
    public static readonly ControlKind<AlertThresholdsRecord> Kind = new("alert-thresholds", 1);

    public const string RecordName = "thresholds";

    private readonly Lock _lock = new();
    private readonly Pool _pool;
    private readonly AlertThresholds _defaults;
    private AlertThresholds _current;
    private AlertThresholdsRecord? _stored;

    public AlertSettings(Pool pool, AlertThresholds defaults)
    {
        _pool = pool;
        _defaults = defaults;
        _stored = pool.Control.Get(Kind, RecordName);
        _current = _stored is null ? defaults : ToThresholds(_stored);
    }

    /// <summary>The thresholds the evaluator applies now.</summary>
    public AlertThresholds Current
    {
        get
        {
            lock (_lock)
            {
                return _current;
            }
        }
    }

    public AlertThresholdsDto Get()
    {
        lock (_lock)
        {
            return ToDto(_current, _stored is null ? "config" : "api");
        }
    }

    /// <summary>Changes what the request gives (the rest stays), after checking all of it; the record is durable before the new values apply.</summary>
    public AlertThresholdsDto Update(UpdateAlertThresholdsRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.PoolFullPercent is { } percent && (double.IsNaN(percent) || percent < MinPoolFullPercent || percent > MaxPoolFullPercent))
        {
            throw new StorageException(StorageError.InvalidArgument, FormattableString.Invariant($"poolFullPercent must be between {MinPoolFullPercent} and {MaxPoolFullPercent} (% of the pool used), not {percent}"));
        }

        var stalled = request.StalledJob is { } s ? Span(s, "stalledJob") : (TimeSpan?)null;
        var rpo = request.Rpo is { } r ? Span(r, "rpo") : (TimeSpan?)null;
        lock (_lock)
        {
            var next = new AlertThresholds(
                request.PoolFullPercent is { } p ? p / 100.0 : _current.NearlyFull,
                stalled ?? _current.StalledJob,
                rpo ?? _current.Rpo);
            var record = new AlertThresholdsRecord(Math.Round(next.NearlyFull * 100, 4), (long)next.StalledJob.TotalMilliseconds, (long)next.Rpo.TotalMilliseconds);
            _pool.Control.Put(Kind, RecordName, record);
            _stored = record;
            _current = next;
            return ToDto(next, "api");
        }
    }

    /// <summary>The file's values, for `GET` to show what a reset would bring back; not used by the evaluator once the API set them.</summary>
    public AlertThresholds Defaults => _defaults;

    private static TimeSpan Span(string text, string field)
    {
        // One message for both failures (not a duration, out of range): what is allowed and how to write it.
        var refusal = new StorageException(StorageError.InvalidArgument, $"{field} must be a duration between 1s and {SettingText.Text(MaxSpan)}, written like 30s, 10m, 1h or 2d; not '{Bounded.Text(text, 64)}'");
        TimeSpan span;
        try
        {
            span = ServerSettings.Duration(text, field, MaxSpan);
        }
        catch (ArgumentException)
        {
            throw refusal;
        }

        return span < MinSpan || span > MaxSpan ? throw refusal : span;
    }

    private static AlertThresholds ToThresholds(AlertThresholdsRecord r) =>
        new(r.PoolFullPercent / 100.0, TimeSpan.FromMilliseconds(r.StalledJobMilliseconds), TimeSpan.FromMilliseconds(r.RpoMilliseconds));

    private static AlertThresholdsDto ToDto(AlertThresholds t, string source) =>
        new(Math.Round(t.NearlyFull * 100, 2), Text(t.StalledJob), Text(t.Rpo), source);

    /// <summary>A span as the duration parser reads it back (whole days, hours, minutes, seconds, else milliseconds).</summary>
    public static string Text(TimeSpan span) => SettingText.Text(span);
}

/// <summary>The persisted thresholds (ADR 0011: the server's own record, never the API DTO).</summary>
public sealed record AlertThresholdsRecord(double PoolFullPercent, long StalledJobMilliseconds, long RpoMilliseconds);
