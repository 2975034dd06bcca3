using Microsoft.Extensions.Time.Testing;
using Tidemark.Server.Api;

namespace Tidemark.Server.Tests;

/// <summary>Failed API logins: a growing delay per source, rare summaries, and a table that stays bounded.</summary>
public sealed class ApiLoginThrottleTests
{
    [Fact]
    public void Failed_RepeatedFromOneSource_DelayGrowsToTheCap()
    {
        var throttle = new LoginThrottle(new FakeTimeProvider());

        var delays = Enumerable.Range(0, 12).Select(_ => throttle.Failed("10.0.0.1").Delay).ToList();

        Assert.All(delays.Take(LoginThrottle.FreeFailures), d => Assert.Equal(TimeSpan.Zero, d));
        Assert.Equal(LoginThrottle.FirstDelay, delays[LoginThrottle.FreeFailures]);
        Assert.Equal(LoginThrottle.FirstDelay * 2, delays[LoginThrottle.FreeFailures + 1]);
        Assert.Equal(LoginThrottle.MaxDelay, delays[^1]);
        Assert.Equal(TimeSpan.Zero, throttle.Failed("10.0.0.2").Delay);
    }

    [Fact]
    public void Succeeded_ResetsTheSource_AndQuietTimeForgetsIt()
    {
        var time = new FakeTimeProvider();
        var throttle = new LoginThrottle(time);
        for (var i = 0; i < 6; i++)
        {
            throttle.Failed("a");
            throttle.Failed("b");
        }

        throttle.Succeeded("a");
        time.Advance(LoginThrottle.ForgetAfter);

        Assert.Equal(1, throttle.Failed("a").Failures);
        Assert.Equal(1, throttle.Failed("b").Failures);
    }

    [Fact]
    public void Failed_Reports_OncePerIntervalPerSource_WithTheCount()
    {
        var time = new FakeTimeProvider();
        var throttle = new LoginThrottle(time);

        var first = throttle.Failed("a").Report;
        var quiet = Enumerable.Range(0, 500).Select(_ => throttle.Failed("a").Report).ToList();
        time.Advance(LoginThrottle.ReportInterval);
        var next = throttle.Failed("a").Report;

        Assert.Equal(1, first);
        Assert.All(quiet, r => Assert.Equal(0, r));
        Assert.Equal(501, next);
    }

    [Fact]
    public void Failed_ManySources_ReportsAreCappedOverall_AndNoneIsLost()
    {
        var time = new FakeTimeProvider();
        var throttle = new LoginThrottle(time, maxSources: 100, maxReportsPerInterval: 5);

        var reports = Enumerable.Range(0, 50).Select(i => throttle.Failed($"10.0.{i}.1").Report).ToList();
        time.Advance(LoginThrottle.ReportInterval);
        var later = throttle.Failed("10.9.9.9").Report;

        Assert.Equal(5, reports.Count(r => r > 0));
        Assert.Equal(50 + 1, reports.Sum() + later);
    }

    [Fact]
    public void Failed_MoreSourcesThanTheTableHolds_StaysBounded_AndThrottlesTheRestTogether()
    {
        var throttle = new LoginThrottle(new FakeTimeProvider(), maxSources: 64);

        for (var i = 0; i < 10_000; i++)
        {
            throttle.Failed($"source-{i}");
        }

        Assert.True(throttle.TrackedSources <= 65, $"{throttle.TrackedSources} sources tracked");
        Assert.Equal(LoginThrottle.MaxDelay, throttle.Failed("yet-another").Delay);
    }
}
