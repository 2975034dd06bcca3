using Microsoft.Extensions.Time.Testing;
using Tidemark.Replication;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Tests;

/// <summary>The replica bandwidth limit, on a fake clock: reads run ahead of the rate by one piece at most.</summary>
public sealed class RateLimitedStreamTests
{
    [Fact]
    public async Task Read_AtOneMegabytePerSecond_DeliversWhatIsDueAndNoMore()
    {
        const long rate = 1 << 20;
        var clock = new FakeTimeProvider();
        var source = new byte[8 << 20];
        Random.Shared.NextBytes(source);
        await using var limited = new RateLimitedStream(new MemoryStream(source), rate, clock);
        var copy = new MemoryStream();
        var copying = limited.CopyToAsync(copy, 1 << 20);

        var elapsed = TimeSpan.Zero;
        while (!copying.IsCompleted && elapsed < TimeSpan.FromSeconds(120))
        {
            clock.Advance(TimeSpan.FromMilliseconds(100));
            elapsed += TimeSpan.FromMilliseconds(100);
            await Task.Delay(2); // let the copy loop take what became due
            var allowed = (long)(elapsed.TotalSeconds * rate) + (rate / 10);
            Assert.True(copy.Length <= allowed, $"after {elapsed.TotalSeconds:F1} s {copy.Length} bytes were read; the limit allows {allowed}");
        }

        await copying.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(elapsed >= TimeSpan.FromSeconds(7.5), $"8 MiB at 1 MiB/s went through in {elapsed.TotalSeconds:F1} simulated seconds");
        Assert.Equal(source, copy.ToArray());
    }

    [Fact]
    public async Task Read_Synchronously_WaitsOnTheSameClockAndDeliversWhatIsDue()
    {
        // A synchronous reader (Stream.CopyTo) waits on a timer of the given clock, not on a task.
        const long rate = 1 << 20;
        var clock = new FakeTimeProvider();
        var source = new byte[3 << 20];
        Random.Shared.NextBytes(source);
        using var limited = new RateLimitedStream(new MemoryStream(source), rate, clock);
        var copy = new MemoryStream();
        var copying = Task.Run(() => limited.CopyTo(copy, 1 << 20));

        var elapsed = TimeSpan.Zero;
        while (!copying.IsCompleted && elapsed < TimeSpan.FromSeconds(60))
        {
            clock.Advance(TimeSpan.FromMilliseconds(100));
            elapsed += TimeSpan.FromMilliseconds(100);
            await Task.Delay(2);
            var allowed = (long)(elapsed.TotalSeconds * rate) + (rate / 10);
            Assert.True(copy.Length <= allowed, $"after {elapsed.TotalSeconds:F1} s {copy.Length} bytes were read; the limit allows {allowed}");
        }

        await copying.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(elapsed >= TimeSpan.FromSeconds(2.5), $"3 MiB at 1 MiB/s went through in {elapsed.TotalSeconds:F1} simulated seconds");
        Assert.Equal(source, copy.ToArray());
        Assert.Equal(source.Length, limited.BytesRead);
    }
}
