using RocksDbSharp;

namespace Tidemark.Engine.Metadata;

/// <summary>
/// The pool's crash-safe sorted key-value index (RocksDB; see docs/adr/0001-metadata-in-rocksdb.md).
/// Every commit is one atomic WriteBatch written with sync, so after a crash the store holds exactly
/// the batches that were acknowledged. RocksDB checksums every block and WAL record; reads verify them.
/// </summary>
internal sealed class MetaStore : IDisposable
{
    private readonly RocksDb _db;
    private readonly WriteOptions _sync = new WriteOptions().SetSync(true);
    private readonly ReadOptions _read = new ReadOptions().SetVerifyChecksums(true);
    private readonly Cache _cache;

    private MetaStore(RocksDb db, Cache cache)
    {
        _db = db;
        _cache = cache;
    }

    public static MetaStore Open(string directory, bool createIfMissing, long blockCacheBytes)
    {
        NativeHeap.Configure();
        var cache = Cache.CreateLru((ulong)blockCacheBytes);
        // Index and filter blocks live in the block cache, cut into partitions, so the store's
        // memory is bounded by the cache whatever the volume size. Held outside the cache (table
        // readers), they grew with the metadata: 4 MiB at 6 GiB, 13 MiB at 20 GiB, and building a
        // whole-file filter in a compaction raised the peak RSS by 60 MiB (docs/BENCHMARKS.md,
        // memory). Only the small top-level index of each file, and the files of level 0 (read on
        // every lookup), stay pinned; index and filter blocks are evicted after data blocks.
        var table = new BlockBasedTableOptions()
            .SetBlockCache(cache)
            .SetBlockSize(16 * 1024)
            .SetCacheIndexAndFilterBlocks(true)
            .SetPinL0FilterAndIndexBlocksInCache(true)
            .SetIndexType(BlockBasedTableIndexType.TwoLevelIndex)
            .SetFilterPolicy(BloomFilterPolicy.Create(10, false))
            .SetFormatVersion(5);
        Native.Instance.rocksdb_block_based_options_set_partition_filters(table.Handle, 1);
        Native.Instance.rocksdb_block_based_options_set_pin_top_level_index_and_filter(table.Handle, 1);
        Native.Instance.rocksdb_block_based_options_set_metadata_block_size(table.Handle, 4096);
        Native.Instance.rocksdb_block_based_options_set_cache_index_and_filter_blocks_with_high_priority(table.Handle, 1);
        var options = new DbOptions()
            .SetCreateIfMissing(createIfMissing)
            .SetErrorIfExists(false)
            .SetParanoidChecks(true)
            .SetBlockBasedTableFactory(table)
            .SetWriteBufferSize(16UL << 20)
            .SetMaxWriteBufferNumber(2)
            .SetMaxOpenFiles(256)
            .SetKeepLogFileNum(2)
            .SetCompression(Compression.Lz4);
        MapPageMergeOperator.SetOn(options.Handle);
        try
        {
            return new MetaStore(RocksDb.Open(options, directory), cache);
        }
        catch (RocksDbException ex)
        {
            throw new StorageException(
                ex.Message.Contains("Corruption", StringComparison.OrdinalIgnoreCase) ? StorageError.Corrupt : StorageError.IoError,
                $"cannot open pool metadata in {directory}: {ex.Message}",
                ex);
        }
    }

    public byte[]? Get(ReadOnlySpan<byte> key) => Get(key, _read);

    public byte[]? Get(ReadOnlySpan<byte> key, ReadOptions read)
    {
        try
        {
            return _db.Get(key, null, read);
        }
        catch (RocksDbException ex)
        {
            throw Wrap(ex);
        }
    }

    public bool TryGetFixed(ReadOnlySpan<byte> key, Span<byte> value)
    {
        try
        {
            return _db.GetFixedSizeValue(key, value, null, _read);
        }
        catch (RocksDbException ex)
        {
            throw Wrap(ex);
        }
    }

    public void Write(WriteBatch batch)
    {
        try
        {
            _db.Write(batch, _sync);
        }
        catch (RocksDbException ex)
        {
            throw Wrap(ex);
        }
    }

    public Iterator NewIterator() => _db.NewIterator(null, _read);

    /// <summary>
    /// An iterator with the caller's read options (an iterate upper bound, so a seek stops at the end
    /// of the range asked for instead of stepping over the deletion markers beyond it). The options
    /// must stay alive until the iterator is disposed.
    /// </summary>
    public Iterator NewIterator(ReadOptions options) => _db.NewIterator(null, options);

    /// <summary>Visits every key starting with <paramref name="prefix"/>, in order.</summary>
    public void Scan(ReadOnlySpan<byte> prefix, ScanVisitor visitor) => Scan(prefix, prefix, visitor);

    /// <summary>Visits keys starting with <paramref name="prefix"/> from <paramref name="start"/> on, in order.</summary>
    public void Scan(ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> start, ScanVisitor visitor)
    {
        using var it = NewIterator();
        Visit(it, prefix, start, visitor);
    }

    /// <summary>
    /// A read-only view of the store as it is now (a RocksDB snapshot): commits after this call are
    /// not seen through it. Dispose it promptly; RocksDB keeps what it sees from compaction.
    /// </summary>
    public MetaView OpenView() => new(this);

    internal static void VisitRange(Iterator it, ReadOnlySpan<byte> prefix, ScanVisitor visitor) => Visit(it, prefix, prefix, visitor);

    internal Snapshot CreateSnapshot() => _db.CreateSnapshot();

    private static void Visit(Iterator it, ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> start, ScanVisitor visitor)
    {
        try
        {
            for (it.Seek(start); it.Valid(); it.Next())
            {
                var key = it.GetKeySpan();
                if (!key.StartsWith(prefix) || !visitor(key, it.GetValueSpan()))
                {
                    break;
                }
            }
        }
        catch (RocksDbException ex)
        {
            throw Wrap(ex);
        }
    }

    public string? Property(string name) => _db.GetProperty(name);

    /// <summary>Writes the memtables out and compacts every level (tests: merges then run in compaction).</summary>
    internal void CompactAll()
    {
        try
        {
            _db.CompactRange((byte[]?)null, null);
        }
        catch (RocksDbException ex)
        {
            throw Wrap(ex);
        }
    }

    /// <summary>RocksDB's estimate of the number of keys (good to a few percent; for progress, not for logic).</summary>
    public long EstimateKeys() =>
        long.TryParse(Property("rocksdb.estimate-num-keys"), System.Globalization.CultureInfo.InvariantCulture, out var keys) ? keys : 0;

    public void Dispose()
    {
        _db.Dispose();
        GC.KeepAlive(_cache);
    }

    private static StorageException Wrap(RocksDbException ex) =>
        new(
            ex.Message.Contains("Corruption", StringComparison.OrdinalIgnoreCase) ? StorageError.Corrupt : StorageError.IoError,
            $"pool metadata error: {ex.Message}",
            ex);
}

/// <summary>Reads of one consistent state of a <see cref="MetaStore"/> (see <see cref="MetaStore.OpenView"/>).</summary>
internal sealed class MetaView : IDisposable
{
    private readonly MetaStore _store;
    private readonly Snapshot _snapshot;
    private readonly ReadOptions _read;

    public MetaView(MetaStore store)
    {
        _store = store;
        _snapshot = store.CreateSnapshot();
        _read = new ReadOptions().SetVerifyChecksums(true).SetSnapshot(_snapshot);
    }

    public byte[]? Get(ReadOnlySpan<byte> key) => _store.Get(key, _read);

    public void Scan(ReadOnlySpan<byte> prefix, ScanVisitor visitor)
    {
        using var it = _store.NewIterator(_read);
        MetaStore.VisitRange(it, prefix, visitor);
    }

    public void Dispose() => _snapshot.Dispose();
}

internal delegate bool ScanVisitor(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value);
