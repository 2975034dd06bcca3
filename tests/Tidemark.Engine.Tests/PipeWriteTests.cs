namespace Tidemark.Engine.Tests;

/// <summary>Volume.WriteFromPipe: the splice path NBD uses for large WRITE payloads, against the real file store.</summary>
public class PipeWriteTests
{
    [Fact]
    public void WriteFromPipe_InPlaceAndRedirected_LiveAndSnapshotReadBackAfterReopen()
    {
        using var t = new TempPool(onDisk: true);
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        using var pipe = KernelPipe.Create(1 << 20);
        var a = Bytes.Pattern(1 << 20, 1);
        var b = Bytes.Pattern(1 << 20, 2);

        pipe.Write(a);
        v.WriteFromPipe(0, a.Length, pipe, forceUnitAccess: false);
        Assert.Equal(0, pipe.AvailableBytes);
        t.Pool.CreateSnapshot("vol", "before");

        // Half over blocks the snapshot shares (redirected), half into fresh space; then in place.
        pipe.Write(b);
        v.WriteFromPipe(512 << 10, b.Length, pipe, forceUnitAccess: true);
        pipe.Write(b.AsSpan(0, 64 << 10));
        v.WriteFromPipe(1L << 20, 64 << 10, pipe, forceUnitAccess: false);

        var expected = new byte[3 << 19];
        a.AsSpan(0, 512 << 10).CopyTo(expected);
        b.CopyTo(expected.AsSpan(512 << 10));
        b.AsSpan(0, 64 << 10).CopyTo(expected.AsSpan(1 << 20));
        Assert.Equal(expected, Bytes.Read(v, 0, expected.Length));
        Assert.Equal(a, Bytes.Read(t.Pool.OpenSnapshot("vol@before"), 0, a.Length));

        v.Flush();
        t.Reopen();
        Assert.Equal(expected, Bytes.Read(t.Pool.GetVolume("vol"), 0, expected.Length));
        Assert.Equal(a, Bytes.Read(t.Pool.OpenSnapshot("vol@before"), 0, a.Length));
        t.AssertVerifyClean();
    }

    [Theory]
    [InlineData(512, 4096)]
    [InlineData(0, 2048)]
    public void WriteFromPipe_NotWholeBlocks_RefusedAndPipeUntouched(long offset, int length)
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 1L << 20, logicalBlockSize: 512);
        using var pipe = KernelPipe.Create(1 << 20);
        pipe.Write(new byte[length]);

        var ex = Assert.Throws<StorageException>(() => v.WriteFromPipe(offset, length, pipe, forceUnitAccess: false));

        Assert.Equal(StorageError.Misaligned, ex.Error);
        Assert.Equal(length, pipe.AvailableBytes);
        Assert.Equal(0, t.Pool.GetInfo().UsedBytes);
    }

    [Fact]
    public void WriteFromPipe_FullPool_FailsWholeAndLeavesDataAndPipe()
    {
        using var t = new TempPool(capacityBytes: 1L << 20, onDisk: true);
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var first = Bytes.Pattern(512 << 10, 3);
        v.Write(0, first, false);
        using var pipe = KernelPipe.Create(1 << 20);
        pipe.Write(Bytes.Pattern(1 << 20, 4));

        var ex = Assert.Throws<StorageException>(() => v.WriteFromPipe(256 << 10, 1 << 20, pipe, forceUnitAccess: false));

        // Space is taken before anything is written: the overlapping half is not half-overwritten.
        Assert.Equal(StorageError.NoSpace, ex.Error);
        Assert.Equal(1 << 20, pipe.AvailableBytes);
        Assert.Equal(first, Bytes.Read(v, 0, first.Length));
        pipe.Discard();
        Assert.Equal(0, pipe.AvailableBytes);
        t.AssertVerifyClean();
    }
}
