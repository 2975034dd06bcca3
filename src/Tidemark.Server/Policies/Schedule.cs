using System.Globalization;
using System.Text.RegularExpressions;
using Cronos;

namespace Tidemark.Server.Policies;

/// <summary>
/// When a policy runs. Administrators write "every 15m", "every 2h", "hourly", "hourly at :05",
/// "daily 02:30", "weekly sun 02:30" or "cron EXPR"; all but "every" become cron expressions
/// (Cronos), evaluated in the policy's time zone. "every N" runs at multiples of N since the Unix
/// epoch, so its times do not drift with restarts.
/// </summary>
public sealed partial class Schedule
{
    private readonly CronExpression? _cron;
    private readonly TimeSpan _every;
    private readonly TimeZoneInfo _zone;

    private Schedule(string text, CronExpression? cron, TimeSpan every, TimeZoneInfo zone)
    {
        Text = text;
        _cron = cron;
        _every = every;
        _zone = zone;
    }

    public string Text { get; }

    /// <summary>Parses a schedule; a clear error says how to write it.</summary>
    public static Schedule Parse(string text, TimeZoneInfo zone)
    {
        var t = text.Trim();
        var lower = t.ToLowerInvariant();
        if (EveryPattern().Match(lower) is { Success: true } every)
        {
            var n = int.Parse(every.Groups[1].Value, CultureInfo.InvariantCulture);
            var span = every.Groups[2].Value switch
            {
                "m" or "min" or "minutes" => TimeSpan.FromMinutes(n),
                _ => TimeSpan.FromHours(n),
            };
            if (span < TimeSpan.FromMinutes(1) || span > TimeSpan.FromDays(7))
            {
                throw Bad(text, "an interval between 1 minute and 7 days");
            }

            return new Schedule(t, null, span, zone);
        }

        string cron;
        if (lower == "hourly")
        {
            cron = "0 * * * *";
        }
        else if (HourlyAtPattern().Match(lower) is { Success: true } hourly)
        {
            cron = $"{Minute(hourly.Groups[1].Value, text)} * * * *";
        }
        else if (DailyPattern().Match(lower) is { Success: true } daily)
        {
            cron = $"{Minute(daily.Groups[2].Value, text)} {Hour(daily.Groups[1].Value, text)} * * *";
        }
        else if (WeeklyPattern().Match(lower) is { Success: true } weekly)
        {
            var day = Array.IndexOf(["sun", "mon", "tue", "wed", "thu", "fri", "sat"], weekly.Groups[1].Value[..3]);
            if (day < 0)
            {
                throw Bad(text, "a day such as sun, mon ... sat");
            }

            cron = $"{Minute(weekly.Groups[3].Value, text)} {Hour(weekly.Groups[2].Value, text)} * * {day}";
        }
        else if (lower.StartsWith("cron ", StringComparison.Ordinal))
        {
            cron = t[5..].Trim();
        }
        else
        {
            throw Bad(text, "one of: every 15m, every 2h, hourly, hourly at :05, daily 02:30, weekly sun 02:30, cron 0 */4 * * *");
        }

        try
        {
            return new Schedule(t, CronExpression.Parse(cron, cron.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard), TimeSpan.Zero, zone);
        }
        catch (CronFormatException ex)
        {
            throw Bad(text, $"a valid cron expression ({ex.Message})");
        }
    }

    /// <summary>The first run strictly after <paramref name="after"/>.</summary>
    public DateTimeOffset Next(DateTimeOffset after)
    {
        if (_cron is null)
        {
            var ticks = _every.Ticks;
            var since = after.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks;
            return new DateTimeOffset(DateTimeOffset.UnixEpoch.UtcTicks + ((since / ticks) + 1) * ticks, TimeSpan.Zero);
        }

        return _cron.GetNextOccurrence(after, _zone)
            ?? throw new StorageException(StorageError.InvalidArgument, $"schedule '{Text}' never runs again");
    }

    private static string Minute(string value, string text) =>
        int.TryParse(value, CultureInfo.InvariantCulture, out var m) && m is >= 0 and < 60 ? m.ToString(CultureInfo.InvariantCulture) : throw Bad(text, "minutes 00-59");

    private static string Hour(string value, string text) =>
        int.TryParse(value, CultureInfo.InvariantCulture, out var h) && h is >= 0 and < 24 ? h.ToString(CultureInfo.InvariantCulture) : throw Bad(text, "hours 00-23");

    private static StorageException Bad(string text, string expected) =>
        new(StorageError.InvalidArgument, $"schedule '{text}' is not understood; write {expected}");

    [GeneratedRegex(@"^every\s+(\d{1,5})\s*(m|min|minutes|h|hours)$")]
    private static partial Regex EveryPattern();

    [GeneratedRegex(@"^hourly\s+at\s+:(\d{1,2})$")]
    private static partial Regex HourlyAtPattern();

    [GeneratedRegex(@"^daily\s+(?:at\s+)?(\d{1,2}):(\d{2})$")]
    private static partial Regex DailyPattern();

    [GeneratedRegex(@"^weekly\s+([a-z]{3,9})\s*(?:@|at\s+|\s)\s*(\d{1,2}):(\d{2})$")]
    private static partial Regex WeeklyPattern();
}
