using Tidemark.Engine.Allocation;
using Tidemark.Engine.Map;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Where the allocator places runs: several blocks on a multiple of their size (up to 256) when such
/// a place is free ahead, and the blocks skipped for it are still handed out (each block once).
/// </summary>
public class AllocatorTests
{
    [Theory]
    [InlineData(256, 256)]
    [InlineData(300, 256)]
    [InlineData(16, 16)]
    [InlineData(24, 16)]
    [InlineData(2, 2)]
    public void LargeRun_StartsOnAMultipleOfItsSize(int wanted, int alignment)
    {
        var allocator = new Allocator();
        allocator.AddStore(1 << 20);
        var single = allocator.AllocateRun(1, out _);
        Assert.Equal(1, Phys.Block(single)); // block 0 holds the store's header

        var run = allocator.AllocateRun(wanted, out var got);
        Assert.Equal(0, Phys.Block(run) % alignment);
        Assert.Equal(wanted, got);
    }

    [Fact]
    public void SequentialLargeRuns_StayAligned_AndEveryBlockIsHandedOutOnce()
    {
        var allocator = new Allocator();
        allocator.AddStore(4096);
        var seen = new HashSet<long>();
        var runs = new List<(long Block, int Count)>();
        while (seen.Count < 4095)
        {
            long block;
            int got;
            try
            {
                block = Phys.Block(allocator.AllocateRun(runs.Count % 3 == 0 ? 1 : 256, out got));
            }
            catch (StorageException ex) when (ex.Error == StorageError.NoSpace)
            {
                break;
            }

            runs.Add((block, got));
            for (var i = 0; i < got; i++)
            {
                Assert.True(seen.Add(block + i), $"block {block + i} handed out twice");
            }
        }

        Assert.Equal(4095, seen.Count); // every block but the header, aligned or not
        Assert.DoesNotContain(0L, seen);
        Assert.All(runs.Where(r => r.Count == 256), r => Assert.Equal(0, r.Block % 256));
    }

    [Fact]
    public void WhenNoAlignedPlaceIsFree_TheRunTakesWhatIsFree()
    {
        var allocator = new Allocator();
        allocator.AddStore(8);
        Assert.Equal(1, Phys.Block(allocator.AllocateRun(1, out _)));
        Assert.Equal(2, Phys.Block(allocator.AllocateRun(1, out _)));
        Assert.Equal(4, Phys.Block(allocator.AllocateRun(4, out var aligned))); // block 3 skipped
        Assert.Equal(4, aligned);

        // Only block 3 is left: a run of two (aligned to 2) takes it, one block long.
        Assert.Equal(3, Phys.Block(allocator.AllocateRun(2, out var got)));
        Assert.Equal(1, got);
        var full = Assert.Throws<StorageException>(() => allocator.AllocateRun(1, out _));
        Assert.Equal(StorageError.NoSpace, full.Error);
    }
}
