using Microsoft.Extensions.Time.Testing;

namespace Tidemark.Common.Tests;

/// <summary>The periodic worker's stop rule: no new run after a stop, a running one finishes and is waited for, a fault is kept and ends the runs.</summary>
public sealed class PeriodicWorkerTests
{
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Hang = TimeSpan.FromSeconds(60);

    [Fact]
    public void Runs_OncePerPeriod_OfTheGivenClock()
    {
        var time = new FakeTimeProvider();
        var runs = 0;
        using var worker = new PeriodicWorker(Period, () => runs++, time);

        time.Advance(Period - TimeSpan.FromSeconds(1));
        var beforeThePeriod = runs;
        time.Advance(TimeSpan.FromSeconds(1));
        time.Advance(Period);

        Assert.Equal(0, beforeThePeriod);
        Assert.Equal(2, runs);
    }

    [Fact]
    public async Task Stop_DuringARun_WaitsForIt_AndNoRunStartsAfter()
    {
        var time = new FakeTimeProvider();
        var runs = 0;
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var worker = new PeriodicWorker(
            Period,
            () =>
            {
                Interlocked.Increment(ref runs);
                started.Set();
                release.Wait();
            },
            time);

        var ticking = Task.Run(() => time.Advance(Period));
        Assert.True(started.Wait(Hang));
        var stopping = Task.Run(worker.Stop);
        while (!worker.IsStopped)
        {
            await Task.Delay(1);
        }

        var stoppedWhileRunning = stopping.IsCompleted;
        release.Set();
        await stopping.WaitAsync(Hang);
        await ticking.WaitAsync(Hang);
        time.Advance(Period);
        time.Advance(Period);

        Assert.False(stoppedWhileRunning);
        Assert.Equal(1, runs);
        Assert.Null(worker.Fault);
    }

    [Fact]
    public void Stop_FromInsideARun_DoesNotWaitForItself()
    {
        var time = new FakeTimeProvider();
        var runs = 0;
        PeriodicWorker? worker = null;
        worker = new PeriodicWorker(
            Period,
            () =>
            {
                runs++;
                worker!.Stop();
            },
            time);

        time.Advance(Period);
        time.Advance(Period);

        Assert.Equal(1, runs);
        Assert.True(worker.IsStopped);
    }

    [Fact]
    public void ARunThatThrows_IsKeptAsTheFault_ToldOnce_AndEndsTheRuns()
    {
        var time = new FakeTimeProvider();
        var runs = 0;
        var told = new List<Exception>();
        using var worker = new PeriodicWorker(
            Period,
            () =>
            {
                runs++;
                throw new InvalidOperationException("broken");
            },
            time,
            told.Add);

        time.Advance(Period);
        time.Advance(Period);

        Assert.Equal(1, runs);
        Assert.True(worker.IsStopped);
        Assert.Equal("broken", Assert.IsType<InvalidOperationException>(worker.Fault).Message);
        Assert.Same(worker.Fault, Assert.Single(told));
    }

    [Fact]
    public void Dispose_Twice_IsHarmless_AndStopsTheRuns()
    {
        var time = new FakeTimeProvider();
        var runs = 0;
        var worker = new PeriodicWorker(Period, () => runs++, time);

        time.Advance(Period);
        worker.Dispose();
        worker.Dispose();
        time.Advance(Period);

        Assert.Equal(1, runs);
        Assert.True(worker.IsStopped);
    }
}
