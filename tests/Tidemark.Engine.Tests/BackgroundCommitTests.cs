namespace Tidemark.Engine.Tests;

/// <summary>A volume past MaxDirtyPages is committed by the pool's committer thread, not by its writer.</summary>
public class BackgroundCommitTests
{
    [Fact]
    public async Task DirtyPagesPastTheLimit_AreCommittedWithoutAFlush_AndSurviveAReopen()
    {
        using var temp = new TempPool(options: new PoolOptions { MaxDirtyPages = 4 });
        var volume = temp.Pool.CreateVolume("v", 64L << 20, 4096);
        volume.Flush();
        temp.Pool.CreateSnapshot("v", "s"); // writes now redirect, so each one changes the map
        var data = new byte[4096];

        // Five map pages (1 MiB apart) dirty: over the limit of 4 (the fifth write asks for the
        // commit, which then finds all five), under the writer's own limit of 8.
        for (var i = 0; i < 5; i++)
        {
            data.AsSpan().Fill((byte)(i + 1));
            volume.Write((long)i << 20, data, forceUnitAccess: false);
        }

        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (volume.Lineage.HasPending && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20);
        }

        Assert.False(volume.Lineage.HasPending, "the committer did not commit the dirty pages");
        var reopened = temp.Reopen().GetVolume("v");
        for (var i = 0; i < 5; i++)
        {
            reopened.Read((long)i << 20, data);
            Assert.All(data, b => Assert.Equal(i + 1, b));
        }

        temp.AssertVerifyClean();
    }

    [Fact]
    public void Writer_PastTwiceTheLimit_CommitsItself()
    {
        using var temp = new TempPool(options: new PoolOptions { MaxDirtyPages = 2 });
        var volume = temp.Pool.CreateVolume("v", 64L << 20, 4096);
        temp.Pool.CreateSnapshot("v", "s");
        var data = new byte[4096];
        for (var i = 0; i < 40; i++)
        {
            volume.Write((long)i << 20, data, forceUnitAccess: false);

            // Whatever the committer thread is doing, the writer never leaves more than 2 x 2 + 1.
            Assert.InRange(volume.Lineage.DirtyPageCount, 0, 5);
        }
    }
}
