using Tidemark.Engine.Map;

namespace Tidemark.Engine.Tests;

/// <summary>Evicted map pages are reused only after a grace period, come back empty, and stay bounded.</summary>
public class PageRecyclerTests
{
    [Fact]
    public void RetiredPage_IsReusedOnlyAfterGrace_AndComesBackEmpty()
    {
        using var recycler = new PageRecycler(new GracePeriod());
        var page = recycler.Rent(7);
        page[3] = MapEntry.Mapped(42, 1);
        page.Dirty = true;

        recycler.Retire(page);
        var beforeGrace = recycler.Rent(8);
        var taken = recycler.TakeRetired()!;
        recycler.Release(taken);
        var reused = recycler.Rent(9);

        Assert.NotSame(page, beforeGrace);
        Assert.Same(page, reused);
        Assert.Equal(9UL, reused.Number);
        Assert.True(reused.IsEmpty);
        Assert.False(reused.Dirty);
    }

    [Fact]
    public async Task Reclaimer_ReleasesRetiredPagesWithoutACommit_AndWaitsForReadersInFlight()
    {
        var grace = new GracePeriod();
        using var recycler = new PageRecycler(grace);
        var reader = grace.Enter(); // an I/O that may still hold an evicted page
        for (var i = 0; i < PageRecycler.ReclaimBatch; i++)
        {
            recycler.Retire(new MapPage((ulong)i));
        }

        await Task.Delay(200);
        var whileReading = recycler.ReadyCount;
        grace.Exit(reader);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (recycler.ReadyCount == 0)
        {
            await Task.Delay(10, timeout.Token);
        }

        Assert.Equal(0, whileReading);
        Assert.Equal(PageRecycler.ReclaimBatch, recycler.ReadyCount);
    }

    [Fact]
    public void Retired_IsBoundedWhileReadersHoldTheGrace()
    {
        var grace = new GracePeriod();
        using var recycler = new PageRecycler(grace);
        var reader = grace.Enter(); // the reclaimer cannot release while this I/O runs
        try
        {
            for (var i = 0; i < 3 * PageRecycler.MaxReady; i++)
            {
                recycler.Retire(new MapPage((ulong)i));
            }

            Assert.Equal(0, recycler.ReadyCount);
            Assert.True((recycler.TakeRetired()?.Count ?? 0) <= PageRecycler.MaxReady);
        }
        finally
        {
            grace.Exit(reader);
        }
    }
}
