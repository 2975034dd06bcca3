using System.Globalization;

namespace Tidemark.Server.Policies;

/// <summary>
/// Which of a policy's snapshots to keep: the newest <c>KeepLast</c>, and for each of hourly, daily,
/// weekly (ISO weeks) and monthly the newest snapshot of each of the last N periods that have one
/// (grandfather-father-son, as borg and restic count). With no rule at all, everything is kept.
/// Given ranks (a policy that prefers consistent snapshots, ADR 0015: application 2, filesystem 1,
/// crash 0), a period is represented by its best-ranked snapshot, the newest among equals; the
/// newest <c>KeepLast</c> stay whatever their rank.
/// </summary>
public sealed record Retention(int? KeepLast, int? KeepHourly, int? KeepDaily, int? KeepWeekly, int? KeepMonthly)
{
    public bool KeepsEverything => KeepLast is null && KeepHourly is null && KeepDaily is null && KeepWeekly is null && KeepMonthly is null;

    /// <summary>The snapshots (by name) to keep among <paramref name="snapshots"/>, times converted to <paramref name="zone"/>.</summary>
    public HashSet<string> Keep(IReadOnlyList<(string Name, DateTimeOffset CreatedAt)> snapshots, TimeZoneInfo zone, IReadOnlyDictionary<string, int>? rank = null)
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

        KeepNewestPerPeriod(newestFirst, KeepHourly, t => t.ToString("yyyyMMddHH", CultureInfo.InvariantCulture), zone, keep, rank);
        KeepNewestPerPeriod(newestFirst, KeepDaily, t => t.ToString("yyyyMMdd", CultureInfo.InvariantCulture), zone, keep, rank);
        KeepNewestPerPeriod(newestFirst, KeepWeekly, t => $"{ISOWeek.GetYear(t.DateTime)}-{ISOWeek.GetWeekOfYear(t.DateTime)}", zone, keep, rank);
        KeepNewestPerPeriod(newestFirst, KeepMonthly, t => t.ToString("yyyyMM", CultureInfo.InvariantCulture), zone, keep, rank);
        return keep;
    }

    private static void KeepNewestPerPeriod(List<(string Name, DateTimeOffset CreatedAt)> newestFirst, int? count, Func<DateTimeOffset, string> period, TimeZoneInfo zone, HashSet<string> keep, IReadOnlyDictionary<string, int>? rank)
    {
        if (count is not > 0)
        {
            return;
        }

        // Periods newest first; in each, the best-ranked snapshot (the newest of equals: the list is newest first).
        var periods = newestFirst
            .GroupBy(s => period(TimeZoneInfo.ConvertTime(s.CreatedAt, zone)), StringComparer.Ordinal)
            .Take(count.Value);
        foreach (var members in periods)
        {
            var best = members.First();
            foreach (var s in members)
            {
                if ((rank?.GetValueOrDefault(s.Name) ?? 0) > (rank?.GetValueOrDefault(best.Name) ?? 0))
                {
                    best = s;
                }
            }

            keep.Add(best.Name);
        }
    }
}
