using RocksDbSharp;
using Tidemark.Engine;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine.Tests;

/// <summary>Torn or corrupt metadata is detected and reported, never used.</summary>
public class CorruptionTests
{
    [Fact]
    public void Open_CorruptVolumeRecord_FailsWithCorruptAndNamesTheRecord()
    {
        using var t = new TempPool();
        var volume = t.Pool.CreateVolume("mail", 1L << 20);
        var id = volume.Id;
        t.Pool.Dispose();
        Tamper(t.Directory, Keys.VolumeKey(id), bytes => bytes[^3] ^= 0x40);
        var ex = Assert.Throws<StorageException>(() => Pool.Open(t.Directory, t.Options));
        Assert.Equal(StorageError.Corrupt, ex.Error);
        Assert.Contains("checksum", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_UnreferencedAllocation_ReportsLeak()
    {
        using var t = new TempPool();
        var volume = t.Pool.CreateVolume("vol", 1L << 20);
        volume.Write(0, Bytes.Pattern(8192, 1), false);
        t.Pool.Flush();
        t.Pool.Dispose();
        // Mark block 100 of store 0 as allocated in the persisted bitmap: nothing references it.
        Tamper(t.Directory, Keys.BitmapKey(0, 0), bytes => bytes[100 / 8] |= 1 << (100 % 8));
        using var pool = Pool.Open(t.Directory, t.Options);
        var report = pool.Verify();
        Assert.False(report.IsClean);
        Assert.Contains(report.Problems, p => p.Contains("block 100 of store 0 is allocated but nothing references it", StringComparison.Ordinal));
    }

    [Fact]
    public void Verify_MapPointsAtFreeBlock_ReportsDoubleUseRisk()
    {
        using var t = new TempPool();
        var volume = t.Pool.CreateVolume("vol", 1L << 20);
        volume.Write(0, Bytes.Pattern(4096, 1), false);
        t.Pool.Flush();
        t.Pool.Dispose();
        Tamper(t.Directory, Keys.BitmapKey(0, 0), bytes => Array.Clear(bytes));
        using var pool = Pool.Open(t.Directory, t.Options);
        Assert.Contains(pool.Verify().Problems, p => p.Contains("referenced but marked free", StringComparison.Ordinal));
    }

    [Fact]
    public void Open_StoreOfAnotherPool_Refused()
    {
        using var a = new TempPool();
        using var b = new TempPool();
        a.Pool.Dispose();
        b.Pool.Dispose();
        File.Copy(Path.Combine(a.Directory, "store-0.dat"), Path.Combine(b.Directory, "store-0.dat"), overwrite: true);
        var ex = Assert.Throws<StorageException>(() => Pool.Open(b.Directory, b.Options));
        Assert.Equal(StorageError.Corrupt, ex.Error);
        Assert.Contains("another pool", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_MissingDirectory_NotFound()
    {
        var ex = Assert.Throws<StorageException>(() => Pool.Open(Path.Combine(Path.GetTempPath(), "no-such-pool-" + Guid.NewGuid())));
        Assert.Equal(StorageError.NotFound, ex.Error);
    }

    [Fact]
    public void Create_WhereAPoolExists_AlreadyExistsAndNothingHarmed()
    {
        using var t = new TempPool();
        t.Pool.CreateVolume("vol", 1L << 20).Write(0, Bytes.Pattern(4096, 3), false);
        t.Pool.Dispose();
        Assert.Equal(StorageError.AlreadyExists, Assert.Throws<StorageException>(() => Pool.Create(t.Directory, t.Options)).Error);
        using var pool = Pool.Open(t.Directory, t.Options);
        Assert.Equal(Bytes.Pattern(4096, 3), Bytes.Read(pool.GetVolume("vol"), 0, 4096));
    }

    private static void Tamper(string poolDirectory, byte[] key, Action<byte[]> change)
    {
        // With the pool's merge operator: without it, replaying a WAL that holds map-page deltas stops there.
        var options = new DbOptions();
        Tidemark.Engine.Metadata.MapPageMergeOperator.SetOn(options.Handle);
        using var db = RocksDb.Open(options, Path.Combine(poolDirectory, "meta"));
        var value = db.Get(key) ?? throw new InvalidOperationException("no such record");
        change(value);
        db.Put(key, value);
    }
}
