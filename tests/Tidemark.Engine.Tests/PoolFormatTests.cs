using RocksDbSharp;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine.Tests;

/// <summary>The pool format version: newer pools are refused with both versions named, older ones upgraded on open.</summary>
public sealed class PoolFormatTests
{
    [Fact]
    public void Open_PoolOfANewerFormat_IsRefusedNamingBothVersions()
    {
        using var temp = new TempPool(16L << 20);
        SetFormat(temp, EngineInfo.PoolFormatVersion + 1);

        var ex = Assert.Throws<StorageException>(() => temp.Reopen());

        Assert.Equal(StorageError.Unsupported, ex.Error);
        Assert.Contains($"has format {EngineInfo.PoolFormatVersion + 1}, written by a newer Tidemark", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"reads pool formats {EngineInfo.OldestPoolFormatVersion} to {EngineInfo.PoolFormatVersion}", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_PoolOfAnOlderFormat_IsRefused()
    {
        using var temp = new TempPool(16L << 20);
        SetFormat(temp, EngineInfo.OldestPoolFormatVersion - 1);

        var ex = Assert.Throws<StorageException>(() => temp.Reopen());

        Assert.Equal(StorageError.Unsupported, ex.Error);
        Assert.Contains("older than this build reads", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_FormatOnePool_IsUpgradedBeforeAnythingIsWritten_AndKeepsItsVolumes()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.CreateVolume("mail", 1L << 20);
        temp.Pool.GetVolume("mail").Write(0, new byte[4096], forceUnitAccess: true);
        SetFormat(temp, 1);

        var pool = temp.Reopen();

        Assert.Equal(EngineInfo.PoolFormatVersion, StoredFormat(pool));
        Assert.Equal("mail", pool.GetVolume("mail").Name);
    }

    [Fact]
    public void Decode_RecordOfANewerRecordFormat_IsRefusedNamingBothVersions()
    {
        var bytes = RecordCodec.Encode(new GroupRecord { Name = "erp" });
        bytes[4] = 2;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes, System.IO.Hashing.Crc32.HashToUInt32(bytes.AsSpan(4)));

        var ex = Assert.Throws<StorageException>(() => RecordCodec.Decode<GroupRecord>(bytes, "group erp"));

        Assert.Equal(StorageError.Unsupported, ex.Error);
        Assert.Contains("record format 2, written by a newer Tidemark; this build reads record format 1", ex.Message, StringComparison.Ordinal);
    }

    private static void SetFormat(TempPool temp, int format)
    {
        var record = RecordCodec.Decode<PoolRecord>(temp.Pool.Meta.Get(Keys.PoolKey())!, "the pool");
        record.FormatVersion = format;
        using var batch = new WriteBatch();
        batch.Put(Keys.PoolKey(), RecordCodec.Encode(record));
        temp.Pool.Meta.Write(batch);
    }

    private static int StoredFormat(Pool pool) =>
        RecordCodec.Decode<PoolRecord>(pool.Meta.Get(Keys.PoolKey())!, "the pool").FormatVersion;
}
