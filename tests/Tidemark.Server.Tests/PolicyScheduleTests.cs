using FsCheck;
using FsCheck.Fluent;
using Tidemark.Server.Policies;

namespace Tidemark.Server.Tests;

public sealed class PolicyScheduleTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 24, 10, 17, 30, TimeSpan.Zero);

    [Theory]
    [InlineData("every 15m", "2026-11-24T10:30:00Z")]
    [InlineData("every 2h", "2026-11-24T12:00:00Z")]
    [InlineData("hourly", "2026-11-24T11:00:00Z")]
    [InlineData("hourly at :05", "2026-11-24T11:05:00Z")]
    [InlineData("daily 02:30", "2026-11-25T02:30:00Z")]
    [InlineData("daily 10:20", "2026-11-24T10:20:00Z")]
    [InlineData("weekly sun 02:30", "2026-11-29T02:30:00Z")]
    [InlineData("weekly sun@02:30", "2026-11-29T02:30:00Z")]
    [InlineData("cron 0 */4 * * *", "2026-11-24T12:00:00Z")]
    public void Next_IsTheFirstRunAfter(string text, string expected)
    {
        var schedule = Schedule.Parse(text, TimeZoneInfo.Utc);

        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), schedule.Next(Start));
    }

    [Fact]
    public void Daily_InAZone_RunsAtLocalTime()
    {
        var berlin = TimeZoneInfo.FindSystemTimeZoneById("Europe/Berlin");

        var next = Schedule.Parse("daily 02:30", berlin).Next(Start);

        Assert.Equal(new DateTimeOffset(2026, 11, 25, 1, 30, 0, TimeSpan.Zero), next.ToUniversalTime());
    }

    [Theory]
    [InlineData("sometimes")]
    [InlineData("every 0m")]
    [InlineData("every 30s")]
    [InlineData("daily 25:00")]
    [InlineData("hourly at :75")]
    [InlineData("weekly someday 02:00")]
    [InlineData("cron not a cron")]
    public void Parse_Nonsense_SaysHowToWriteIt(string text)
    {
        var error = Assert.Throws<StorageException>(() => Schedule.Parse(text, TimeZoneInfo.Utc));

        Assert.Equal(StorageError.InvalidArgument, error.Error);
        Assert.Contains("write", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Retention_GrandfatherFatherSon_KeepsNewestOfEachPeriod()
    {
        // One snapshot every 6 hours for 40 days.
        var snapshots = Enumerable.Range(0, 160).Select(i => ($"s{i:D3}", Start.AddHours(-6 * i))).ToList();

        var keep = new Retention(KeepLast: 2, KeepHourly: null, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 2).Keep(snapshots, TimeZoneInfo.Utc);

        Assert.Contains("s000", keep);
        Assert.Contains("s001", keep);
        Assert.Equal(7, snapshots.Where(s => keep.Contains(s.Item1)).Select(s => s.Item2.Date).Distinct().Count(d => d > Start.Date.AddDays(-7)));
        Assert.Contains(snapshots.Where(s => s.Item2.Month == 10).OrderByDescending(s => s.Item2).First().Item1, keep); // newest of October
        Assert.True(keep.Count <= 2 + 7 + 4 + 2);
    }

    [Fact]
    public void Retention_Property_KeptSetIsSubsetContainsNewestAndEachRecentDay()
    {
        Prop.ForAll(
            Gen.Choose(0, 60 * 24 * 20).ListOf().ToArbitrary(),
            Gen.Choose(1, 10).ToArbitrary(),
            Gen.Choose(1, 10).ToArbitrary(),
            (minutesAgo, keepLast, keepDaily) =>
            {
                var snapshots = minutesAgo.Distinct().Select(m => ($"s{m}", Start.AddMinutes(-m))).ToList();
                var keep = new Retention(keepLast, null, keepDaily, null, null).Keep(snapshots, TimeZoneInfo.Utc);
                var newest = snapshots.OrderByDescending(s => s.Item2).ToList();
                var days = newest.Select(s => s.Item2.UtcDateTime.Date).Distinct().Take(keepDaily).ToList();
                return keep.IsSubsetOf(snapshots.Select(s => s.Item1))
                    && newest.Take(keepLast).All(s => keep.Contains(s.Item1))
                    && days.All(d => keep.Contains(newest.First(s => s.Item2.UtcDateTime.Date == d).Item1))
                    && keep.Count <= keepLast + keepDaily;
            }).QuickCheckThrowOnFailure();
    }
}
