using System.Buffers.Binary;
using System.IO.Hashing;
using RocksDbSharp;
using Tidemark.Engine.Allocation;
using Tidemark.Engine.Control;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;
using Tidemark.Engine.Storage;

namespace Tidemark.Engine;

/// <summary>
/// A pool: backing stores, the allocator, the metadata store, and the volumes, views, snapshots and
/// groups kept in it. The only owner of durable state. Control operations (create, snapshot, delete,
/// rollback...) are serialized; block I/O on volumes runs concurrently with them and with each other.
/// </summary>
public sealed partial class Pool : IDisposable
{
    private const string MetaDirectory = "meta";
    private static readonly byte[] StoreMagic = "TIDEMARK-STORE\0\0"u8.ToArray();

    private readonly Lock _controlLock = new();

    // The long operation now running under the control lock, if its caller follows it.
    private OperationProgress? _progress;
    private readonly Lock _commitLock = new();
    private readonly Dictionary<uint, Lineage> _lineages = [];
    private readonly Dictionary<Guid, Volume> _volumes = [];
    private readonly Dictionary<string, GroupRecord> _groups = new(StringComparer.Ordinal);
    private readonly List<StoreRecord> _storeRecords = [];
    private readonly PoolRecord _record;
    private IBackingStore[] _stores = [];
    private long _flushRequests;
    private long _flushedUpTo;
    private long _commitSeq;
    private long _durableSeq;
    private long _cachedPages;
    private Exception? _failure;
    private readonly SerialWorker<bool> _committer;
    private int _commitQueued;
    private volatile bool _committerStopping;
    private bool _disposed;

    private Pool(string directory, PoolOptions options, MetaStore meta, PoolRecord record)
    {
        Pages = new Map.PageRecycler(Grace);
        Directory = directory;
        Options = options;
        Meta = meta;
        _record = record;
        Control = new ControlStore(this);
        _committer = new SerialWorker<bool>("tidemark commit", _ => CommitInBackground());
    }

    public string Directory { get; }

    public Guid Id => _record.PoolId;

    public PoolOptions Options { get; }

    internal MetaStore Meta { get; }

    /// <summary>The server's durable state, kept in this pool's metadata store (see <see cref="ControlStore"/>).</summary>
    public ControlStore Control { get; }

    internal Allocator Allocator { get; } = new();

    internal GracePeriod Grace { get; } = new();

    internal Map.PageRecycler Pages { get; }

    internal long DurableCommitSeq => Volatile.Read(ref _durableSeq);

    /// <summary>Creates a pool in <paramref name="directory"/> with one file store (or the device in <see cref="PoolOptions.FirstStorePath"/>).</summary>
    public static Pool Create(string directory, PoolOptions? options = null)
    {
        options ??= new PoolOptions();
        System.IO.Directory.CreateDirectory(directory);
        var metaDir = Path.Combine(directory, MetaDirectory);
        if (System.IO.Directory.Exists(metaDir) && System.IO.Directory.EnumerateFileSystemEntries(metaDir).Any())
        {
            throw new StorageException(StorageError.AlreadyExists, $"a pool already exists in {directory}; open it instead, or choose an empty directory");
        }

        var meta = MetaStore.Open(metaDir, createIfMissing: true, options.MetadataCacheBytes);
        var record = new PoolRecord { PoolId = Guid.NewGuid(), FormatVersion = EngineInfo.PoolFormatVersion, CreatedAt = options.Clock() };
        var pool = new Pool(directory, options, meta, record);
        try
        {
            using (var batch = new WriteBatch())
            {
                batch.Put(Keys.PoolKey(), RecordCodec.Encode(record));
                meta.Write(batch);
            }

            var path = options.FirstStorePath ?? Path.Combine(directory, "store-0.dat");

            // A RADOS store sizes itself from the cluster (0 = its pool's free space), not from the local disk.
            pool.AddStore(path, options.FirstStoreCapacityBytes ?? (RadosLocation.IsRados(path) ? 0 : DefaultCapacity(directory)));
            return pool;
        }
        catch
        {
            pool.Dispose();
            throw;
        }
    }

    /// <summary>Opens an existing pool, checking every record and finishing deletions a crash interrupted.</summary>
    public static Pool Open(string directory, PoolOptions? options = null)
    {
        options ??= new PoolOptions();
        var metaDir = Path.Combine(directory, MetaDirectory);
        if (!System.IO.Directory.Exists(metaDir))
        {
            throw new StorageException(StorageError.NotFound, $"no pool in {directory}; create one first");
        }

        var meta = MetaStore.Open(metaDir, createIfMissing: false, options.MetadataCacheBytes);
        Pool? pool = null;
        try
        {
            var bytes = meta.Get(Keys.PoolKey())
                ?? throw new StorageException(StorageError.Corrupt, $"the pool record in {directory} is missing; the metadata is damaged");
            var record = RecordCodec.Decode<PoolRecord>(bytes, "the pool");
            CheckFormat(directory, record.FormatVersion);
            pool = new Pool(directory, options, meta, record);
            pool.UpgradeFormat();
            pool.Load();
            pool.ResumeDeletions();
            return pool;
        }
        catch
        {
            if (pool is not null)
            {
                pool.Dispose();
            }
            else
            {
                meta.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// Refuses a pool this build cannot read correctly: one written by a newer build (it may hold
    /// records or merge operands this build would misread) or one older than any build still reads.
    /// </summary>
    internal static void CheckFormat(string directory, int format)
    {
        if (format > EngineInfo.PoolFormatVersion)
        {
            throw new StorageException(
                StorageError.Unsupported,
                $"the pool in {directory} has format {format}, written by a newer Tidemark; this build reads pool formats {EngineInfo.OldestPoolFormatVersion} to {EngineInfo.PoolFormatVersion}. Run the newer Tidemark (a downgrade cannot read it), or restore the pool from a backup made with this build");
        }

        if (format < EngineInfo.OldestPoolFormatVersion)
        {
            throw new StorageException(
                StorageError.Unsupported,
                $"the pool in {directory} has format {format}, older than this build reads (formats {EngineInfo.OldestPoolFormatVersion} to {EngineInfo.PoolFormatVersion}); open it once with an older Tidemark that upgrades it, then with this one");
        }
    }

    // Marks an older pool with this build's format before anything of that format is written
    // (a map-page merge operand, a control record), so an older build refuses it from then on
    // instead of misreading it.
    private void UpgradeFormat()
    {
        if (_record.FormatVersion == EngineInfo.PoolFormatVersion)
        {
            return;
        }

        _record.FormatVersion = EngineInfo.PoolFormatVersion;
        using var batch = new WriteBatch();
        PutPoolRecord(batch);
        Meta.Write(batch);
    }

    private static long DefaultCapacity(string directory)
    {
        var free = new DriveInfo(Path.GetFullPath(directory)).AvailableFreeSpace;
        return Math.Max(1L << 30, free / Lineage.BlockBytes * Lineage.BlockBytes);
    }

    private void Load()
    {
        Meta.Scan([Keys.Store], (_, value) =>
        {
            var store = RecordCodec.Decode<StoreRecord>(value, "a store");
            var opened = Options.StoreFactory(store.Path, store.CapacityBytes, false);
            CheckStoreHeader(opened, store.Index);
            _storeRecords.Add(store);
            _stores = [.. _stores, opened];
            Allocator.AddStore(opened.CapacityBytes / Lineage.BlockBytes);
            return true;
        });
        Meta.Scan([Keys.Bitmap], (key, value) =>
        {
            var store = BinaryPrimitives.ReadUInt16BigEndian(key[1..]);
            var chunk = BinaryPrimitives.ReadUInt32BigEndian(key[3..]);
            if (store >= _stores.Length)
            {
                throw new StorageException(StorageError.Corrupt, $"allocation bitmap for unknown store {store}");
            }

            Allocator.LoadChunk(store, chunk, value);
            return true;
        });
        Meta.Scan([Keys.Lineage], (key, value) =>
        {
            var lineage = RecordCodec.Decode<LineageRecord>(value, $"lineage {Keys.ReadLineage(key)}");
            _lineages.Add(lineage.Id, new Lineage(this, lineage, parent: null));
            return true;
        });
        foreach (var lineage in _lineages.Values)
        {
            lineage.LoadCounters(Meta.Get(Keys.Prefix(Keys.Counters, lineage.Id)), HasLivePages(lineage.Id));
        }

        foreach (var lineage in _lineages.Values.Where(l => l.Record.ParentLineage != 0))
        {
            lineage.Parent = _lineages.TryGetValue(lineage.Record.ParentLineage, out var parent)
                ? parent
                : throw new StorageException(StorageError.Corrupt, $"lineage {lineage.Id} has a missing parent {lineage.Record.ParentLineage}");
        }

        Meta.Scan([Keys.Snapshot], (key, value) =>
        {
            var snapshot = RecordCodec.Decode<SnapshotRecord>(value, $"snapshot {Keys.ReadLineage(key)}/{Keys.ReadU64At(key, 5)}");
            if (!_lineages.TryGetValue(snapshot.Lineage, out var lineage))
            {
                throw new StorageException(StorageError.Corrupt, $"snapshot {snapshot.Name} belongs to a missing lineage {snapshot.Lineage}");
            }

            lineage.Snapshots.Add(snapshot.Epoch, snapshot);
            if (snapshot.State != SnapshotState.Deleting)
            {
                lineage.AddSeer(snapshot.Epoch);
            }

            return true;
        });
        Meta.Scan([Keys.Volume], (_, value) =>
        {
            var volume = RecordCodec.Decode<VolumeRecord>(value, "a volume");
            if (!_lineages.TryGetValue(volume.Lineage, out var lineage))
            {
                throw new StorageException(StorageError.Corrupt, $"volume {volume.Name} points at a missing lineage {volume.Lineage}");
            }

            _volumes.Add(volume.Id, new Volume(this, volume, lineage));
            return true;
        });
        Meta.Scan([Keys.Group], (_, value) =>
        {
            var group = RecordCodec.Decode<GroupRecord>(value, "a group");
            _groups.Add(group.Name, group);
            return true;
        });
    }

    // ---- commit ----

    /// <summary>Makes every write that completed before this call durable, in every volume of the pool.</summary>
    public void Flush()
    {
        var mine = Interlocked.Increment(ref _flushRequests);
        lock (_commitLock)
        {
            // Group commit: a commit that started after this request was made covers it.
            if (Volatile.Read(ref _flushedUpTo) >= mine)
            {
                return;
            }

            var upTo = Volatile.Read(ref _flushRequests);
            CommitLocked(null, null);
            Volatile.Write(ref _flushedUpTo, upTo);
        }
    }

    /// <summary>
    /// Like <see cref="Flush()"/>, and commits <paramref name="control"/> in the same atomic metadata
    /// batch as the pending map changes: after a crash both are there or neither (the hook for
    /// bookkeeping that must not part from the data it describes, such as a replication commit's).
    /// </summary>
    public void Flush(ControlBatch control)
    {
        ArgumentNullException.ThrowIfNull(control);
        Commit(control.AddTo);
    }

    /// <summary>Writes a batch of control records alone (synced), ordered with the engine's commits.</summary>
    internal void WriteControl(WriteBatch batch)
    {
        lock (_commitLock)
        {
            ThrowIfUnusable();
            Meta.Write(batch);
        }
    }

    /// <summary>Commits pending changes together with <paramref name="extra"/> records in one atomic batch.</summary>
    internal void Commit(Action<WriteBatch>? extra, List<ulong>? extraFreed = null)
    {
        lock (_commitLock)
        {
            CommitLocked(extra, extraFreed);
        }
    }

    /// <summary>
    /// Asks for a commit on the pool's committer thread (started on first use): a volume past
    /// <see cref="PoolOptions.MaxDirtyPages"/> goes on taking writes while the store is synced and
    /// its map pages are written, instead of stalling its writer for that time.
    /// </summary>
    internal void RequestBackgroundCommit()
    {
        // Requests coalesce: one queued commit takes everything dirty when it runs, so a request made
        // while one is queued adds nothing; one made while a commit runs queues the next.
        if (!_committerStopping && Interlocked.Exchange(ref _commitQueued, 1) == 0 && !_committer.Enqueue(true))
        {
            Volatile.Write(ref _commitQueued, 0);
        }
    }

    private void CommitInBackground()
    {
        Volatile.Write(ref _commitQueued, 0);
        if (_committerStopping)
        {
            // Stopping (Dispose flushes itself; a simulated crash must not commit what was queued).
            return;
        }

        try
        {
            Flush();
        }
        catch (Exception ex) when (ex is StorageException or ObjectDisposedException)
        {
            // The pool went offline (the next write or flush reports why) or is closing.
        }
    }

    private void StopCommitter()
    {
        _committerStopping = true;
        _committer.Stop();
    }

    private void CommitLocked(Action<WriteBatch>? extra, List<ulong>? extraFreed)
    {
        ThrowIfUnusable();

        // Before anything is taken from the maps: a store that is away for a while (RADOS) fails
        // the commit here, and the pool stays online (ADR 0017).
        foreach (var store in _stores)
        {
            store.PrepareCommit();
        }

        var seq = ++_commitSeq;
        var allocated = new List<ulong>();
        var freed = new List<ulong>();
        Lineage[] lineages;
        lock (_lineages)
        {
            lineages = [.. _lineages.Values];
        }

        try
        {
            using var batch = new WriteBatch();
            foreach (var lineage in lineages)
            {
                lineage.Collect(batch, allocated, freed, seq);
            }

            extra?.Invoke(batch);
            if (extraFreed is not null)
            {
                freed.AddRange(extraFreed);
            }

            if (allocated.Count > 0 || freed.Count > 0)
            {
                Allocator.ApplyCommit(allocated, freed, batch);
            }

            // Data before the metadata that points at it (DESIGN.md, durability contract).
            foreach (var store in _stores)
            {
                store.Flush();
            }

            if (batch.Count() > 0)
            {
                Meta.Write(batch);
            }

            Volatile.Write(ref _durableSeq, seq);
            foreach (var lineage in lineages)
            {
                lineage.CommitDurable();
            }
        }
        catch (Exception ex)
        {
            // The in-memory state now runs ahead of the store; only a reopen can reconcile them.
            _failure = ex;
            throw new StorageException(StorageError.IoError, $"committing pool metadata failed ({ex.Message}); the pool is offline until it is reopened", ex);
        }

        // Blocks freed and map pages evicted before this point may still be read by an I/O in flight:
        // reuse either only after every such I/O has finished.
        var retiredPages = Pages.TakeRetired();
        if (freed.Count > 0 || retiredPages is not null)
        {
            Grace.WaitForReaders();

            // Durable, unread and not yet reusable: the only moment a hole can be punched safely.
            DiscardFreed(freed);
            Allocator.Release(freed);
            if (retiredPages is not null)
            {
                Pages.Release(retiredPages);
            }
        }
    }

    /// <summary>
    /// Takes the pool offline after an in-memory change was left half made (the next write, flush or
    /// commit reports why), so no commit makes the half change durable; a reopen recovers.
    /// </summary>
    internal void TakeOffline(Exception reason) => Interlocked.CompareExchange(ref _failure, reason, null);

    /// <summary>Hands freed blocks back to the host, one call per run of adjacent blocks of one store.</summary>
    private void DiscardFreed(List<ulong> freed)
    {
        if (freed.Count == 0)
        {
            return;
        }

        var sorted = freed.ToArray();
        Array.Sort(sorted);
        var start = 0;
        for (var i = 1; i <= sorted.Length; i++)
        {
            if (i < sorted.Length && sorted[i] == sorted[i - 1] + 1 && Phys.Store(sorted[i]) == Phys.Store(sorted[start]))
            {
                continue;
            }

            var store = _stores[Phys.Store(sorted[start])];
            store.Discard(Phys.Block(sorted[start]) << Lineage.BlockShift, (long)(i - start) << Lineage.BlockShift);
            start = i;
        }
    }

    internal void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure is not null)
        {
            throw new StorageException(StorageError.IoError, $"the pool is offline after a failed commit ({_failure.Message}); restart to recover");
        }
    }

    internal Lineage NewLineage(Guid volume, Lineage? parent, ulong parentEpoch)
    {
        var record = new LineageRecord
        {
            Id = _record.NextLineage++,
            Volume = volume,
            ParentLineage = parent?.Id ?? 0,
            ParentEpoch = parentEpoch,
            Epoch = 1,
            BaseMappedBlocks = parent is null ? 0 : parent.Snapshots.TryGetValue(parentEpoch, out var pin) ? pin.MappedBlocks : null,
        };
        var lineage = new Lineage(this, record, parent);
        lineage.StartCounting();
        lock (_lineages)
        {
            _lineages.Add(record.Id, lineage);
        }

        return lineage;
    }

    private bool HasLivePages(uint lineage)
    {
        var any = false;
        Meta.Scan(Keys.Prefix(Keys.LivePage, lineage), (_, _) =>
        {
            any = true;
            return false;
        });
        return any;
    }

    internal void PutPoolRecord(WriteBatch batch) => batch.Put(Keys.PoolKey(), RecordCodec.Encode(_record));

    internal static void PutLineage(WriteBatch batch, Lineage lineage) =>
        batch.Put(Keys.LineageKey(lineage.Id), RecordCodec.Encode(lineage.Record));

    internal static void PutSnapshot(WriteBatch batch, SnapshotRecord snapshot) =>
        batch.Put(Keys.SnapshotKey(snapshot.Lineage, snapshot.Epoch), RecordCodec.Encode(snapshot));

    internal static void PutVolume(WriteBatch batch, VolumeRecord volume) =>
        batch.Put(Keys.VolumeKey(volume.Id), RecordCodec.Encode(volume));

    public PoolInfo GetInfo()
    {
        lock (_controlLock)
        {
            var capacity = Allocator.CapacityBlocks * Lineage.BlockBytes;
            var used = Allocator.InUseBlocks * Lineage.BlockBytes;
            return new PoolInfo(
                Id,
                Directory,
                capacity,
                used,
                capacity - used,
                [.. _storeRecords.Select(s => new StoreInfo(s.Index, s.Path, s.Kind, s.CapacityBytes))],
                _volumes.Count,
                _lineages.Values.Sum(l => l.Snapshots.Count));
        }
    }

    /// <summary>
    /// Tests only: stops as a killed process would, without flushing anything and leaving the stores
    /// as they are (a fault-injecting store then decides what of its unflushed writes survive).
    /// </summary>
    internal void SimulateCrash()
    {
        // The committer thread must not touch the metadata store after it is closed (a commit it
        // has started completes first, as if the crash came right after it).
        StopCommitter();
        _disposed = true;
        Meta.Dispose();
    }

    /// <summary>Makes <paramref name="progress"/> the one the control-locked operation reports to, until disposed.</summary>
    private ProgressScope Track(OperationProgress? progress)
    {
        _progress = progress;
        return new ProgressScope(this);
    }

    private readonly struct ProgressScope(Pool pool) : IDisposable
    {
        public void Dispose() => pool._progress = null;
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        try
        {
            StopCommitter();
            if (_failure is null)
            {
                Flush();
            }
        }
        finally
        {
            _disposed = true;
            Pages.Dispose();
            foreach (var store in _stores)
            {
                store.Dispose();
            }

            Meta.Dispose();
        }
    }
}

/// <summary>
/// Memory the engine holds, by part (see <see cref="Pool.GetMemoryUsage"/>), and the process's native
/// heap (glibc), which is mostly the metadata store's: in use, and freed but not yet given back.
/// </summary>
public sealed record EngineMemory(
    long MapCacheBytes,
    long RecycledPageBytes,
    long BlockCacheBytes,
    long MemtableBytes,
    long TableReaderBytes,
    long NativeHeapInUseBytes,
    long NativeHeapFreeBytes);

/// <summary>Settings of an open pool. Defaults suit one appliance; tests shrink them.</summary>
public sealed record PoolOptions
{
    /// <summary>Capacity of the first file store; default: the free space of the file system.</summary>
    public long? FirstStoreCapacityBytes { get; init; }

    /// <summary>Where the first store lives (a file or a block device); default DIR/store-0.dat.</summary>
    public string? FirstStorePath { get; init; }

    /// <summary>Memory for cached map pages (each covers 1 MiB of a volume in 4 KiB).</summary>
    public long MapCacheBytes { get; init; } = 32L << 20;

    /// <summary>Memory for the metadata store's block cache (data, index and filter blocks).</summary>
    public long MetadataCacheBytes { get; init; } = 24L << 20;

    /// <summary>
    /// A volume with more dirty map pages than this asks for a commit in the background; with twice
    /// as many, its writer commits itself (bounds memory and replay).
    /// </summary>
    public int MaxDirtyPages { get; init; } = 2048;

    /// <summary>The clock for snapshot times and holds (tests substitute a controllable one).</summary>
    public Func<DateTimeOffset> Clock { get; init; } = () => DateTimeOffset.UtcNow;

    /// <summary>Opens (create=false) or creates (create=true) a store; tests substitute a fault-injecting one.</summary>
    public Func<string, long, bool, IBackingStore> StoreFactory { get; init; } =
        (path, capacity, create) => RadosLocation.IsRados(path)
            ? RadosBackingStore.Open(path, capacity)
            : create ? FileBackingStore.Create(path, capacity) : FileBackingStore.Open(path, capacity);
}

public sealed record StoreInfo(int Index, string Path, StoreKind Kind, long CapacityBytes);

public sealed record PoolInfo(Guid Id, string Directory, long CapacityBytes, long UsedBytes, long FreeBytes, IReadOnlyList<StoreInfo> Stores, int Volumes, int Snapshots);
