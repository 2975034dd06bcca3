using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

/// <summary>Volume.WriteAtomic: redirect on write, one map switch, bounded extent (ADR 0018).</summary>
public class AtomicWriteTests
{
    [Fact]
    public void WriteAtomic_ThenRead_ReturnsDataAndPersistsAfterFlushReopen()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var data = Bytes.Pattern(Volume.MaxAtomicBytes, 1);

        v.WriteAtomic(4L << 20, data, forceUnitAccess: true);

        Assert.Equal(data, Bytes.Read(v, 4L << 20, data.Length));
        t.Reopen();
        Assert.Equal(data, Bytes.Read(t.Pool.GetVolume("vol"), 4L << 20, data.Length));
        t.AssertVerifyClean();
    }

    [Fact]
    public void WriteAtomic_OverBlocksOnlyTheLiveImageHolds_RedirectsToFreshBlocksAndFreesTheOld()
    {
        // A plain write overwrites such blocks in place (a crash can tear it); an atomic one must not.
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        const int Blocks = 64;
        v.Write(0, Bytes.Pattern(Blocks * 4096, 1), forceUnitAccess: true);
        var before = Enumerable.Range(0, Blocks).Select(b => v.Lineage.GetLive(b).Phys).ToArray();
        var used = t.Pool.GetInfo().UsedBytes;

        var data = Bytes.Pattern(Blocks * 4096, 2);
        v.WriteAtomic(0, data, forceUnitAccess: true);

        var after = Enumerable.Range(0, Blocks).Select(b => v.Lineage.GetLive(b).Phys).ToArray();
        Assert.Empty(before.Intersect(after));
        Assert.Equal(data, Bytes.Read(v, 0, data.Length));

        // The old blocks went back to the pool once the switch was durable: no space is kept or leaked.
        v.Flush();
        Assert.Equal(used, t.Pool.GetInfo().UsedBytes);
        t.AssertVerifyClean();
    }

    [Fact]
    public void WriteAtomic_AfterSnapshot_SnapshotKeepsTheOldImage()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var old = Bytes.Pattern(256 << 10, 1);
        v.Write(1L << 20, old, forceUnitAccess: false);
        t.Pool.CreateSnapshot("vol", "s");

        var data = Bytes.Pattern(256 << 10, 2);
        v.WriteAtomic(1L << 20, data, forceUnitAccess: false);

        Assert.Equal(data, Bytes.Read(v, 1L << 20, data.Length));
        Assert.Equal(old, Bytes.Read(t.Pool.OpenSnapshot("vol@s"), 1L << 20, old.Length));
        v.Flush();
        t.AssertVerifyClean();
    }

    [Theory]
    [InlineData(512, 256 << 10, StorageError.Misaligned)] // starts inside an allocation unit
    [InlineData(0, 4096 + 512, StorageError.Misaligned)] // ends inside one
    [InlineData(0, (1 << 20) + 4096, StorageError.InvalidArgument)] // longer than the atomic bound
    [InlineData((16L << 20) - 4096, 8192, StorageError.OutOfRange)]
    public void WriteAtomic_Refused_TypedErrorAndNothingWritten(long offset, int length, StorageError expected)
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var old = Bytes.Pattern(2 << 20, 1);
        v.Write(0, old, forceUnitAccess: false);

        var e = Assert.Throws<StorageException>(() => v.WriteAtomic(offset, new byte[length], forceUnitAccess: false));

        Assert.Equal(expected, e.Error);
        Assert.Equal(old, Bytes.Read(v, 0, old.Length));
    }

    [Fact]
    public void WriteAtomic_FullPool_FailsWholeAndLeavesTheOldData()
    {
        // Fresh space for the whole extent is allocated before anything is written or switched.
        using var t = new TempPool(capacityBytes: 8L << 20);
        var v = t.Pool.CreateVolume("vol", 64L << 20);
        var old = Bytes.Pattern(1 << 20, 1);
        v.Write(0, old, forceUnitAccess: true);
        var filler = Bytes.Pattern(1 << 20, 9);
        var e = Assert.Throws<StorageException>(() =>
        {
            for (var i = 1; i < 64; i++)
            {
                v.Write((long)i << 20, filler, forceUnitAccess: false);
            }
        });
        Assert.Equal(StorageError.NoSpace, e.Error);

        e = Assert.Throws<StorageException>(() => v.WriteAtomic(0, Bytes.Pattern(1 << 20, 2), forceUnitAccess: true));

        Assert.Equal(StorageError.NoSpace, e.Error);
        Assert.Equal(old, Bytes.Read(v, 0, old.Length));
        t.AssertVerifyClean();
    }

    [Fact]
    public async Task WriteAtomic_ConcurrentReaders_SeeEachWriteWhollyOldOrWhollyNew()
    {
        // Every write stamps all its blocks with one number; a read of the extent that saw two
        // numbers saw part of a write.
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        const int Extent = 256 << 10;
        const long Offset = 3L << 20;
        var done = 0;
        var torn = 0;
        var readers = Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
        {
            var buffer = new byte[Extent + 8192];
            while (Volatile.Read(ref done) == 0)
            {
                // Also reads that start and end inside the extent's first and last blocks.
                v.Read(Offset - 4096, buffer);
                var first = buffer[4096];
                for (var i = 4096; i < 4096 + Extent; i += 512)
                {
                    if (buffer[i] != first)
                    {
                        Interlocked.Increment(ref torn);
                        break;
                    }
                }
            }
        })).ToArray();

        var data = new byte[Extent];
        for (var n = 1; n <= 400; n++)
        {
            Array.Fill(data, (byte)n);
            v.WriteAtomic(Offset, data, forceUnitAccess: n % 50 == 0);
        }

        Volatile.Write(ref done, 1);
        await Task.WhenAll(readers);
        Assert.Equal(0, torn);
        Assert.All(Bytes.Read(v, Offset, Extent), b => Assert.Equal((byte)144, b)); // 400 mod 256
        v.Flush();
        t.AssertVerifyClean();
    }
}
