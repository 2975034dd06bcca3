using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

public class VolumeTests
{
    [Fact]
    public void Read_NeverWritten_ReturnsZerosAndUsesNoSpace()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 64L << 20);
        Assert.All(Bytes.Read(v, 0, 1 << 20), b => Assert.Equal(0, b));
        var runs = new AllocationRun[4];
        Assert.Equal(1, v.GetAllocationStatus(0, 1 << 20, runs));
        Assert.Equal(new AllocationRun(0, 1 << 20, AllocationState.Hole), runs[0]);
        Assert.Equal(0, t.Pool.GetInfo().UsedBytes);
    }

    [Fact]
    public void AllocationStatus_NeverWrittenRange_LooksUpEachMapPageOnceNotEachBlock()
    {
        // 64 MiB never written: 16,384 blocks on 64 map pages of 256. Asking the store once per block
        // made GET LBA STATUS and SANITIZE cost ~2 µs a block; once per page is 64 lookups.
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 1L << 30);
        v.Write(96L << 20, Bytes.Pattern(4096, 3), forceUnitAccess: false);
        var before = v.Lineage.StorePageLookups;

        var runs = new AllocationRun[4];
        Assert.Equal(1, v.GetAllocationStatus(0, 64L << 20, runs));

        Assert.Equal(new AllocationRun(0, 64L << 20, AllocationState.Hole), runs[0]);
        Assert.Equal(64, v.Lineage.StorePageLookups - before);
    }

    [Theory]
    [InlineData(512, 0, 4096)]
    [InlineData(512, 512, 512)]
    [InlineData(512, 3584, 1024)]
    [InlineData(512, 4096 * 3 - 512, 4096 * 5 + 1024)]
    [InlineData(4096, 8192, 65536)]
    public void Write_ThenRead_ReturnsData(int lbs, long offset, int length)
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20, lbs);
        var data = Bytes.Pattern(length, 7);
        v.Write(offset, data, forceUnitAccess: false);
        Assert.Equal(data, Bytes.Read(v, offset, length));
        var around = Bytes.Read(v, 0, (int)(offset + length + 4096));
        Assert.All(around.AsSpan(0, (int)offset).ToArray(), b => Assert.Equal(0, b));
        Assert.All(around.AsSpan((int)(offset + length)).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Write_FlushReopen_DataPersists()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var data = Bytes.Pattern(1 << 20, 3);
        v.Write(4096, data, forceUnitAccess: false);
        v.Flush();
        var reopened = t.Reopen().GetVolume("vol");
        Assert.Equal(data, Bytes.Read(reopened, 4096, data.Length));
        t.AssertVerifyClean();
    }

    [Fact]
    public void Io_OutOfRangeOrMisaligned_TypedErrorsAndNothingHarmed()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 1L << 20);
        var data = Bytes.Pattern(4096, 1);
        v.Write(0, data, false);
        Assert.Equal(StorageError.OutOfRange, Assert.Throws<StorageException>(() => v.Write((1L << 20) - 512, new byte[1024], false)).Error);
        Assert.Equal(StorageError.OutOfRange, Assert.Throws<StorageException>(() => v.Read(-512, new byte[512])).Error);
        Assert.Equal(StorageError.Misaligned, Assert.Throws<StorageException>(() => v.Write(100, new byte[512], false)).Error);
        Assert.Equal(StorageError.Misaligned, Assert.Throws<StorageException>(() => v.Read(0, new byte[100])).Error);
        Assert.Equal(data, Bytes.Read(v, 0, 4096));
    }

    [Fact]
    public void Unmap_WholeBlocks_FreesSpaceAndReadsZeros()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        v.Write(0, Bytes.Pattern(1 << 20, 5), false);
        v.Flush();
        Assert.Equal(1L << 20, t.Pool.GetInfo().UsedBytes);
        v.Unmap(0, 512 * 1024);
        v.Flush();
        Assert.Equal(512L * 1024, t.Pool.GetInfo().UsedBytes);
        Assert.All(Bytes.Read(v, 0, 512 * 1024), b => Assert.Equal(0, b));
        var runs = new AllocationRun[4];
        Assert.Equal(2, v.GetAllocationStatus(0, 1 << 20, runs));
        Assert.Equal(new AllocationRun(0, 512 * 1024, AllocationState.Hole), runs[0]);
        Assert.Equal(new AllocationRun(512 * 1024, 512 * 1024, AllocationState.Allocated), runs[1]);
        t.AssertVerifyClean();
    }

    [Fact]
    public void WriteZeroes_PartialBlocks_ZeroesOnlyTheRange()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 1L << 20);
        var data = Bytes.Pattern(16384, 9);
        v.Write(0, data, false);
        v.WriteZeroes(1024, 8192, mayUnmap: true);
        Array.Clear(data, 1024, 8192);
        Assert.Equal(data, Bytes.Read(v, 0, 16384));
        v.WriteZeroes(0, 16384, mayUnmap: false);
        Assert.All(Bytes.Read(v, 0, 16384), b => Assert.Equal(0, b));
        var runs = new AllocationRun[4];
        Assert.Equal(AllocationState.Allocated, runs[..v.GetAllocationStatus(0, 16384, runs)][0].State);
    }

    [Fact]
    public void CompareAndWrite_MatchWritesMismatchReportsOffset()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 1L << 20);
        var a = Bytes.Pattern(1024, 1);
        var b = Bytes.Pattern(1024, 2);
        v.Write(512, a, false);
        Assert.Equal(-1, v.CompareAndWrite(512, a, b, false));
        Assert.Equal(b, Bytes.Read(v, 512, 1024));
        var wrong = (byte[])b.Clone();
        wrong[700] ^= 1;
        Assert.Equal(700, v.CompareAndWrite(512, wrong, a, false));
        Assert.Equal(b, Bytes.Read(v, 512, 1024));
    }

    [Fact]
    public void CreateVolume_BadNamesAndSizes_TypedErrors()
    {
        using var t = new TempPool();
        t.Pool.CreateVolume("mail", 1L << 20);
        Assert.Equal(StorageError.AlreadyExists, Assert.Throws<StorageException>(() => t.Pool.CreateVolume("mail", 1L << 20)).Error);
        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => t.Pool.CreateVolume("-bad", 1L << 20)).Error);
        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => t.Pool.CreateVolume("a@b", 1L << 20)).Error);
        Assert.Equal(StorageError.InvalidArgument, Assert.Throws<StorageException>(() => t.Pool.CreateVolume("zero", 0)).Error);
        Assert.Equal(StorageError.Misaligned, Assert.Throws<StorageException>(() => t.Pool.CreateVolume("odd", 1000)).Error);
        Assert.Equal(StorageError.InvalidArgument, Assert.Throws<StorageException>(() => t.Pool.CreateVolume("lbs", 1L << 20, 1024)).Error);
    }

    [Fact]
    public void Resize_Grow_NewSpaceReadsZerosAndEventRaised()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 1L << 20);
        var raised = 0;
        v.SizeChanged += (_, _) => raised++;
        t.Pool.ResizeVolume("vol", 2L << 20);
        Assert.Equal(1, raised);
        Assert.Equal(2L << 20, v.SizeBytes);
        v.Write((2L << 20) - 4096, Bytes.Pattern(4096, 1), false);
        Assert.Equal(StorageError.InvalidArgument, Assert.Throws<StorageException>(() => t.Pool.ResizeVolume("vol", 1L << 20)).Error);
        Assert.Equal(2L << 20, t.Reopen().GetVolume("vol").SizeBytes);
    }

    [Fact]
    public void Write_PoolFull_FailsThatWriteOnlyAndVolumeStaysUsable()
    {
        using var t = new TempPool(capacityBytes: 1L << 20);
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var first = Bytes.Pattern(512 * 1024, 1);
        v.Write(0, first, false);
        var ex = Assert.Throws<StorageException>(() => v.Write(1L << 20, new byte[1 << 20], false));
        Assert.Equal(StorageError.NoSpace, ex.Error);
        Assert.Equal(first, Bytes.Read(v, 0, first.Length));
        v.Write(0, Bytes.Pattern(4096, 2), false);
        v.Flush();
        t.AssertVerifyClean();
    }

    [Fact]
    public void DeleteVolume_FreesItsSpace()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        v.Write(0, Bytes.Pattern(1 << 20, 1), false);
        t.Pool.CreateSnapshot("vol", "s1");
        v.Write(0, Bytes.Pattern(1 << 20, 2), false);
        t.Pool.DeleteVolume("vol");
        Assert.Equal(StorageError.NotFound, Assert.Throws<StorageException>(() => v.Read(0, new byte[512])).Error);
        Assert.Equal(0, t.Pool.GetInfo().UsedBytes);
        t.AssertVerifyClean();
        Assert.Empty(t.Reopen().Volumes);
        t.AssertVerifyClean();
    }
}
