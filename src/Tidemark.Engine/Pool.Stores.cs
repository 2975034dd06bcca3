using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using RocksDbSharp;
using Tidemark.Engine.Allocation;
using Tidemark.Engine.Control;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;
using Tidemark.Engine.Storage;

namespace Tidemark.Engine;

/// <summary>The pool's backing stores: adding and growing them, their headers, physical block I/O, and the engine's memory figures.</summary>
public sealed partial class Pool
{
    /// <summary>
    /// Adds a backing store (a new sparse file, a raw block device, or a RADOS location; capacity 0
    /// there takes the RADOS pool's free space) to the pool while it runs.
    /// </summary>
    public void AddStore(string path, long capacityBytes)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var rados = RadosLocation.IsRados(path);
            var fullPath = rados ? RadosLocation.Parse(path).WithAbsoluteConf().ToString() : Path.GetFullPath(path);
            if (_storeRecords.Any(s => s.Path == fullPath))
            {
                throw new StorageException(StorageError.AlreadyExists, $"{fullPath} is already a store of this pool");
            }

            if (capacityBytes < 16 * Lineage.BlockBytes && !FileBackingStore.IsBlockDevice(fullPath) && !(rados && capacityBytes == 0))
            {
                throw new StorageException(StorageError.InvalidArgument, $"a store needs at least 64K of capacity, not {capacityBytes} bytes");
            }

            var index = _storeRecords.Count;
            var store = Options.StoreFactory(fullPath, capacityBytes, true);
            try
            {
                RefuseIfNotEmpty(store);
                WriteStoreHeader(store, index);
                var record = new StoreRecord
                {
                    Index = index,
                    Path = fullPath,
                    Kind = rados ? StoreKind.Rados : FileBackingStore.IsBlockDevice(fullPath) ? StoreKind.Device : StoreKind.File,
                    CapacityBytes = store.CapacityBytes,
                };
                using var batch = new WriteBatch();
                batch.Put(Keys.StoreKey(index), RecordCodec.Encode(record));
                lock (_commitLock)
                {
                    Meta.Write(batch);
                }

                _storeRecords.Add(record);
                Allocator.AddStore(store.CapacityBytes / Lineage.BlockBytes);
                _stores = [.. _stores, store];
            }
            catch
            {
                store.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// The most reads worth having in flight on a device of this pool: the largest of its stores'
    /// (a read may land on any of them), 1 for a pool of local stores only.
    /// </summary>
    internal int PreferredConcurrency
    {
        get
        {
            var most = 1;
            foreach (var store in Volatile.Read(ref _stores))
            {
                most = Math.Max(most, store.PreferredConcurrency);
            }

            return most;
        }
    }

    /// <summary>Raises the capacity of a file store (capacity on demand).</summary>
    public void GrowStore(int index, long capacityBytes)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            if (index < 0 || index >= _stores.Length)
            {
                throw new StorageException(StorageError.NotFound, $"the pool has no store {index}");
            }

            if (_stores[index] is not FileBackingStore file)
            {
                throw new StorageException(StorageError.Unsupported, $"store {index} cannot grow");
            }

            file.Grow(capacityBytes);
            _storeRecords[index].CapacityBytes = capacityBytes;
            using var batch = new WriteBatch();
            batch.Put(Keys.StoreKey(index), RecordCodec.Encode(_storeRecords[index]));
            lock (_commitLock)
            {
                Meta.Write(batch);
            }

            Allocator.Grow(index, capacityBytes / Lineage.BlockBytes);
        }
    }

    // A device (or reused file) that already holds something is never overwritten: it may be
    // another pool's store or a file system someone still needs.
    private static void RefuseIfNotEmpty(IBackingStore store)
    {
        var first = new byte[Lineage.BlockBytes];
        store.Read(0, first);
        if (first.AsSpan().ContainsAnyExcept((byte)0))
        {
            throw new StorageException(
                StorageError.InvalidArgument,
                store is RadosBackingStore rados
                    ? rados.NotEmptyMessage
                    : $"{store.Location} is not empty (it holds data, a file system or another pool's store); wipe its first 4 KiB (wipefs -a, blkdiscard) only if you are sure nothing on it is needed");
        }
    }

    private void WriteStoreHeader(IBackingStore store, int index)
    {
        store.Write(0, StoreHeader(Id, index));
        store.Flush();
    }

    /// <summary>The first 4 KiB of a store: magic, header version, pool id, store index, CRC-32 of the 40 bytes before it.</summary>
    internal static byte[] StoreHeader(Guid pool, int index)
    {
        var header = new byte[Lineage.BlockBytes];
        StoreMagic.CopyTo(header, 0);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(16), EngineInfo.StoreHeaderVersion);
        pool.TryWriteBytes(header.AsSpan(20));
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(36), index);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(40), Crc32.HashToUInt32(header.AsSpan(0, 40)));
        return header;
    }

    private void CheckStoreHeader(IBackingStore store, int index)
    {
        var header = new byte[Lineage.BlockBytes];
        store.Read(0, header);
        var ok = header.AsSpan(0, 16).SequenceEqual(StoreMagic)
            && BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(40)) == Crc32.HashToUInt32(header.AsSpan(0, 40));
        if (!ok)
        {
            throw new StorageException(StorageError.Corrupt, $"store {store.Location} has no valid Tidemark header; it was overwritten or is not this pool's store");
        }

        var version = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(16));
        if (version > EngineInfo.StoreHeaderVersion)
        {
            throw new StorageException(StorageError.Unsupported, $"store {store.Location} has header version {version}, written by a newer Tidemark; this build reads version {EngineInfo.StoreHeaderVersion}. Run the newer Tidemark");
        }

        if (new Guid(header.AsSpan(20, 16)) != Id || BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(36)) != index)
        {
            throw new StorageException(StorageError.Corrupt, $"store {store.Location} belongs to another pool or another position; check the pool's store paths");
        }
    }

    internal void ReadPhys(ulong phys, Span<byte> destination) =>
        _stores[Phys.Store(phys)].Read(Phys.Block(phys) << Lineage.BlockShift, destination);

    /// <summary>
    /// Reads the physical runs of one volume range into <paramref name="destination"/>: runs in one
    /// store go to it as one scattered read (RADOS starts them together), others one by one.
    /// </summary>
    internal void ReadPhysRuns(ReadOnlySpan<(ulong Phys, int At, int Length)> runs, Span<byte> destination)
    {
        var store = OneStore(runs);
        if (store < 0)
        {
            foreach (var each in runs)
            {
                ReadPhys(each.Phys, destination.Slice(each.At, each.Length));
            }

            return;
        }

        var reads = RentStoreReads(runs);
        try
        {
            _stores[store].ReadScattered(reads.AsSpan(0, runs.Length), destination);
        }
        finally
        {
            ArrayPool<StoreRead>.Shared.Return(reads);
        }
    }

    /// <summary>Writes at <paramref name="phys"/>; <paramref name="fresh"/> when the blocks were just allocated for it (IBackingStore.WriteFresh).</summary>
    internal void WritePhys(ulong phys, ReadOnlySpan<byte> source, bool fresh)
    {
        var store = _stores[Phys.Store(phys)];
        var offset = Phys.Block(phys) << Lineage.BlockShift;
        if (fresh)
        {
            store.WriteFresh(offset, source);
        }
        else
        {
            store.Write(offset, source);
        }
    }

    /// <summary>Writes the next <paramref name="lengthBytes"/> of <paramref name="source"/> at <paramref name="phys"/> (IBackingStore.WriteFrom).</summary>
    internal void WritePhysFrom(ulong phys, IPayloadSource source, int lengthBytes, bool fresh) =>
        _stores[Phys.Store(phys)].WriteFrom(Phys.Block(phys) << Lineage.BlockShift, lengthBytes, source, fresh);

    /// <summary>Adds to the count of cached map pages; true when over budget (the caller evicts).</summary>
    internal bool PageCacheAdd(int delta) =>
        Interlocked.Add(ref _cachedPages, delta) * MapPage.Bytes > Options.MapCacheBytes;

    /// <summary>
    /// Where the engine's memory goes: cached map pages (and recycled ones waiting for reuse), and
    /// the metadata store's block cache (which holds its index and filter blocks), memtables and table readers.
    /// </summary>
    public EngineMemory GetMemoryUsage()
    {
        long Property(string name) =>
            long.TryParse(Meta.Property(name), System.Globalization.CultureInfo.InvariantCulture, out var value) ? value : 0;
        var native = NativeHeap.GetUsage();
        return new EngineMemory(
            Interlocked.Read(ref _cachedPages) * MapPage.Bytes,
            (long)Pages.ReadyCount * MapPage.Bytes,
            Property("rocksdb.block-cache-usage"),
            Property("rocksdb.cur-size-all-mem-tables"),
            Property("rocksdb.estimate-table-readers-mem"),
            native.InUseBytes,
            native.FreeBytes);
    }
}
