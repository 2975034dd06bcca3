using System.Globalization;

namespace Tidemark.Server.Policies;

/// <summary>
/// Which of a policy's snapshots to keep: the newest <c>KeepLast</c>, and for each of hourly, daily,
/// weekly (ISO weeks) and monthly the newest snapshot of each of the last N periods that have one
/// (grandfather-father-son, as borg and restic count). With no rule at all, everything is kept.
/// </summary>
public sealed record Retention(int? KeepLast, int? KeepHourly, int? KeepDaily, int? KeepWeekly, int? KeepMonthly)
{
    public bool KeepsEverything => KeepLast is null && KeepHourly is null && KeepDaily is null && KeepWeekly is null && KeepMonthly is null;

    /// <summary>The snapshots (by name) to keep among <paramref name="snapshots"/>, times converted to <paramref name="zone"/>.</summary>
    public HashSet<string> Keep(IReadOnlyList<(string Name, DateTimeOffset CreatedAt)> snapshots, TimeZoneInfo zone)
    {
        var newestFirst = snapshots.OrderByDescending(s => s.CreatedAt).ThenByDescending(s => s.Name, StringComparer.Ordinal).ToList();
        if (KeepsEverything)
        {
            return [.. newestFirst.Select(s => s.Name)];
        }

        var keep = new HashSet<string>(StringComparer.Ordinal);
        foreach (var s in newestFirst.Take(KeepLast ?? 0))
        {
            keep.Add(s.Name);
        }

        KeepNewestPerPeriod(newestFirst, KeepHourly, t => t.ToString("yyyyMMddHH", CultureInfo.InvariantCulture), zone, keep);
        KeepNewestPerPeriod(newestFirst, KeepDaily, t => t.ToString("yyyyMMdd", CultureInfo.InvariantCulture), zone, keep);
        KeepNewestPerPeriod(newestFirst, KeepWeekly, t => $"{ISOWeek.GetYear(t.DateTime)}-{ISOWeek.GetWeekOfYear(t.DateTime)}", zone, keep);
        KeepNewestPerPeriod(newestFirst, KeepMonthly, t => t.ToString("yyyyMM", CultureInfo.InvariantCulture), zone, keep);
        return keep;
    }

    private static void KeepNewestPerPeriod(List<(string Name, DateTimeOffset CreatedAt)> newestFirst, int? count, Func<DateTimeOffset, string> period, TimeZoneInfo zone, HashSet<string> keep)
    {
        if (count is not > 0)
        {
            return;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var s in newestFirst)
        {
            if (seen.Add(period(TimeZoneInfo.ConvertTime(s.CreatedAt, zone))))
            {
                keep.Add(s.Name);
                if (seen.Count == count)
                {
                    return;
                }
            }
        }
    }
}
