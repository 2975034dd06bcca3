using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

/// <summary>A volume's allocated bytes are counted exactly through writes, unmaps, views, rollback and reopen.</summary>
public class AllocationCountTests
{
    private const int Block = 4096;

    [Fact]
    public void AllocatedBytes_FollowsWritesUnmapsViewsAndRollback()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 64L << 20);
        Assert.Equal(0, v.AllocatedBytes);

        v.Write(0, Bytes.Pattern(100 * Block, 1), false);
        v.Write(50 * Block, Bytes.Pattern(100 * Block, 2), false); // 50 blocks overlap
        Assert.Equal(150 * Block, v.AllocatedBytes);

        t.Pool.CreateSnapshot("vol", "s1");
        v.Unmap(0, 10 * Block);
        Assert.Equal(140 * Block, v.AllocatedBytes);

        var view = t.Pool.CreateView("vol@s1", "copy");
        Assert.Equal(150 * Block, view.AllocatedBytes); // shares the snapshot's 150 blocks
        view.Write(140 * Block, Bytes.Pattern(20 * Block, 3), false); // 10 over shared blocks, 10 new
        view.Unmap(0, 5 * Block);
        Assert.Equal(155 * Block, view.AllocatedBytes);

        t.Pool.Rollback("vol", "s1");
        v = t.Pool.GetVolume("vol");
        Assert.Equal(150 * Block, v.AllocatedBytes);
        v.WriteZeroes(0, 20 * Block, mayUnmap: true);
        Assert.Equal(130 * Block, v.AllocatedBytes);

        t.Reopen();
        Assert.Equal(130 * Block, t.Pool.GetVolume("vol").AllocatedBytes);
        Assert.Equal(155 * Block, t.Pool.GetVolume("copy").AllocatedBytes);
        t.AssertVerifyClean();
    }
}
