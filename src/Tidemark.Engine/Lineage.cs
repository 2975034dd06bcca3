using System.Buffers;
using System.Buffers.Binary;
using RocksDbSharp;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

/// <summary>
/// One line of history of a volume: a live map that takes writes in the current epoch, the versions
/// that died while some snapshot could still see them (history, keyed by block and by death epoch),
/// and the snapshots (epochs) cut from it. A view or a rolled-back volume is a lineage whose parent
/// is (lineage, snapshot epoch): blocks it never wrote fall through to the parent as of that epoch.
/// See docs/adr/0002-versioned-map.md for the rules this class keeps.
/// </summary>
internal sealed partial class Lineage
{
    public const int BlockBytes = 4096;
    public const int BlockShift = 12;
    public const ulong Live = ulong.MaxValue;

    private readonly Pool _pool;
    private readonly Lock _mapLock = new();
    // Mutated under _mapLock only; read without it by the live read path.
    private readonly PageTable _pages = new();
    private readonly List<MapPage> _clock = []; // the same pages, in a ring swept by _hand
    private byte[]? _pageBuffer;
    private int _hand;
    private readonly HashSet<MapPage> _dirtyPages = [];
    private Dictionary<long, MapEntry> _pendingHistory = [];

    // Read options of the bounded history scans of snapshot reads (under _mapLock, one at a time);
    // kept for the lineage's life because an iterator uses them until it is disposed.
    private ReadOptions? _historyRead;
    private Dictionary<long, MapEntry> _committingHistory = [];
    private readonly List<ulong> _pendingAllocs = [];
    private readonly List<ulong> _pendingFrees = [];
    private readonly SortedSet<ulong> _seers = [];

    public Lineage(Pool pool, LineageRecord record, Lineage? parent)
    {
        _pool = pool;
        Record = record;
        Parent = parent;
    }

    public LineageRecord Record { get; }

    public uint Id => Record.Id;

    public Lineage? Parent { get; set; }

    public ulong ParentEpoch => Record.ParentEpoch;

    /// <summary>Snapshots cut from this lineage, by epoch (all states).</summary>
    public SortedList<ulong, SnapshotRecord> Snapshots { get; } = [];

    /// <summary>True when some commit collected changes of this lineage that are not yet known durable.</summary>
    public bool HasPending
    {
        get
        {
            lock (_mapLock)
            {
                return _dirtyPages.Count > 0 || _pendingHistory.Count > 0 || _pendingAllocs.Count > 0 || _pendingFrees.Count > 0;
            }
        }
    }

    public int DirtyPageCount => _dirtyPages.Count;

    public int CachedPages
    {
        get
        {
            lock (_mapLock)
            {
                return _pages.Count;
            }
        }
    }

    public ulong Epoch => Record.Epoch;

    /// <summary>Registers a snapshot that can see versions (Active or Hidden, not Deleting).</summary>
    public void AddSeer(ulong epoch)
    {
        lock (_mapLock)
        {
            _seers.Add(epoch);
        }
    }

    public void RemoveSeer(ulong epoch)
    {
        lock (_mapLock)
        {
            _seers.Remove(epoch);
        }
    }

    public bool HasSeers
    {
        get
        {
            lock (_mapLock)
            {
                return _seers.Count > 0;
            }
        }
    }

    /// <summary>Starts a new epoch; the caller has quiesced writers and committed.</summary>
    public ulong CutEpoch()
    {
        lock (_mapLock)
        {
            var epoch = Record.Epoch;
            Record.Epoch = epoch + 1;
            _seers.Add(epoch);
            return epoch;
        }
    }

    // A version is shared when a snapshot that still exists was taken at or after its birth: it
    // must then be kept (history) instead of overwritten or freed.
    private bool SharedLocked(MapEntry entry) => _seers.Count > 0 && entry.Birth <= _seers.Max;

    /// <summary>
    /// Reads whole blocks of the image as of <paramref name="epoch"/> (<see cref="Live"/> for the live
    /// image). Blocks this lineage never wrote fall through to the parent.
    /// </summary>
    public void ReadBlocks(long firstBlock, Span<byte> destination, ulong epoch)
    {
        var count = destination.Length >> BlockShift;
        if (count == 1)
        {
            // The 4 KiB read, the most frequent: no rented array.
            Span<MapEntry> one = stackalloc MapEntry[1];
            Resolve(firstBlock, 1, epoch, one);
            ReadResolved(one, destination);
            return;
        }

        var entries = ArrayPool<MapEntry>.Shared.Rent(count);
        try
        {
            Resolve(firstBlock, count, epoch, entries);
            ReadResolved(entries.AsSpan(0, count), destination);
        }
        finally
        {
            ArrayPool<MapEntry>.Shared.Return(entries);
        }
    }

    /// <summary>
    /// Resolves each block to the entry that holds its data as of <paramref name="epoch"/>, following
    /// parents: the result is Mapped (data at Phys) or not (reads as zeros).
    /// </summary>
    public void Resolve(long firstBlock, int count, ulong epoch, Span<MapEntry> result)
    {
        var fallThrough = false;
        var live = epoch == Live || epoch >= Record.Epoch;
        if (live)
        {
            // Lock-free for cached pages: a concurrent writer replaces an entry's state word
            // atomically, and the grace period keeps a block we read the old address of from reuse.
            var i = 0;
            while (i < count)
            {
                var block = firstBlock + i;
                if (!_pages.TryGet((ulong)block >> MapPage.PageShift, out var page))
                {
                    break;
                }

                page.Referenced = true;
                var end = Math.Min(count, i + MapPage.BlocksPerPage - (int)(block & (MapPage.BlocksPerPage - 1)));
                for (; i < end; i++)
                {
                    result[i] = MapEntry.FromState(page.ReadState((int)((firstBlock + i) & (MapPage.BlocksPerPage - 1))));
                    fallThrough |= result[i].Kind == EntryKind.Inherit;
                }
            }

            if (i < count)
            {
                lock (_mapLock)
                {
                    // One page lookup per page, not per block: a page that was never written is a
                    // store lookup that finds nothing and is not cached, so asking per block cost
                    // 256 lookups per 1 MiB of unwritten range (about 2 µs a block under load,
                    // which made GET LBA STATUS and SANITIZE crawl over never-written ranges).
                    while (i < count)
                    {
                        var block = firstBlock + i;
                        var page = GetPageLocked((ulong)block >> MapPage.PageShift, create: false);
                        var end = Math.Min(count, i + MapPage.BlocksPerPage - (int)(block & (MapPage.BlocksPerPage - 1)));
                        for (; i < end; i++)
                        {
                            result[i] = page is null ? MapEntry.Absent : page[(int)((firstBlock + i) & (MapPage.BlocksPerPage - 1))];
                            fallThrough |= result[i].Kind == EntryKind.Inherit;
                        }
                    }
                }
            }
        }
        else
        {
            Span<byte> key = stackalloc byte[Keys.HistoryKeyBytes];
            var bound = new byte[Keys.HistoryKeyBytes];
            Keys.WriteHistoryKey(bound, Id, (ulong)(firstBlock + count), 0);
            lock (_mapLock)
            {
                // One bounded pass over the range's history instead of a seek per block: a seek
                // that finds no version of its block would otherwise step over every deletion
                // marker after it (deleted snapshots leave many), which made snapshot reads crawl.
                // Created under the lock: either the last commit's records are in the store this
                // iterator reads, or they are still in _committingHistory (see CommitDurable).
                _historyRead ??= new ReadOptions().SetVerifyChecksums(true);
                _historyRead.SetIterateUpperBound(bound);
                using var it = _pool.Meta.NewIterator(_historyRead);
                Keys.WriteHistoryKey(key, Id, (ulong)firstBlock, epoch + 1);
                it.Seek(key);
                for (var i = 0; i < count; i++)
                {
                    var block = firstBlock + i;
                    result[i] = FindHistoryInRangeLocked(it, key, block, epoch) ?? GetLiveLocked(block);
                    fallThrough |= result[i].Kind == EntryKind.Inherit;
                }
            }
        }

        if (fallThrough && Parent is not null)
        {
            ResolveInherited(firstBlock, count, result);
        }
    }

    private void ResolveInherited(long firstBlock, int count, Span<MapEntry> result)
    {
        var i = 0;
        while (i < count)
        {
            if (result[i].Kind != EntryKind.Inherit)
            {
                i++;
                continue;
            }

            var start = i;
            while (i < count && result[i].Kind == EntryKind.Inherit)
            {
                i++;
            }

            var parentEntries = ArrayPool<MapEntry>.Shared.Rent(i - start);
            try
            {
                Parent!.Resolve(firstBlock + start, i - start, ParentEpoch, parentEntries);
                parentEntries.AsSpan(0, i - start).CopyTo(result[start..]);
            }
            finally
            {
                ArrayPool<MapEntry>.Shared.Return(parentEntries);
            }
        }
    }

    // The version visible at `epoch` is the one with the smallest death after it (history records
    // are contiguous: a version dies exactly when the next is born), or the live one if none died.
    // Blocks are visited in increasing order with one iterator bounded to the range: it seeks only
    // when it stands at or before the block (which may have versions); standing past it, or
    // exhausted, means the block has none.
    private MapEntry? FindHistoryInRangeLocked(Iterator it, Span<byte> key, long block, ulong epoch)
    {
        if (it.Valid())
        {
            var at = it.GetKeySpan();
            var atBlock = (long)BinaryPrimitives.ReadUInt64BigEndian(at[5..]);
            if (atBlock < block || (atBlock == block && BinaryPrimitives.ReadUInt64BigEndian(at[13..]) <= epoch))
            {
                Keys.WriteHistoryKey(key, Id, (ulong)block, epoch + 1);
                it.Seek(key);
            }

            if (it.Valid())
            {
                at = it.GetKeySpan();
                if ((long)BinaryPrimitives.ReadUInt64BigEndian(at[5..]) == block)
                {
                    return MapEntry.Read(it.GetValueSpan());
                }
            }
        }

        // Not yet durable: records of the current epoch (death = Epoch > any snapshot epoch).
        if (_committingHistory.TryGetValue(block, out var committing))
        {
            return committing;
        }

        return _pendingHistory.TryGetValue(block, out var pending) ? pending : null;
    }

    private void ReadResolved(ReadOnlySpan<MapEntry> entries, Span<byte> destination)
    {
        if (entries.Length == 1)
        {
            if (entries[0].IsMapped)
            {
                _pool.ReadPhys(entries[0].Phys, destination);
            }
            else
            {
                destination.Clear();
            }

            return;
        }

        var runs = ArrayPool<(ulong Phys, int At, int Length)>.Shared.Rent(entries.Length);
        try
        {
            var count = CoalesceRuns(entries, destination, runs);
            if (count == 1)
            {
                _pool.ReadPhys(runs[0].Phys, destination.Slice(runs[0].At, runs[0].Length));
            }
            else if (count > 1)
            {
                _pool.ReadPhysRuns(runs.AsSpan(0, count), destination);
            }
        }
        finally
        {
            ArrayPool<(ulong Phys, int At, int Length)>.Shared.Return(runs);
        }
    }

    /// <summary>
    /// Zeroes the unmapped blocks of <paramref name="destination"/> and puts the physical runs to read
    /// into <paramref name="runs"/>, returning their count. Physically contiguous blocks coalesce into
    /// one run; the runs of a fragmented range (a volume overwritten in places after snapshots) go to
    /// the store together, so a RADOS store reads them in parallel instead of one round trip after another.
    /// </summary>
    private static int CoalesceRuns(ReadOnlySpan<MapEntry> entries, Span<byte> destination, Span<(ulong Phys, int At, int Length)> runs)
    {
        var count = 0;
        var i = 0;
        while (i < entries.Length)
        {
            var e = entries[i];
            if (!e.IsMapped)
            {
                destination.Slice(i << BlockShift, BlockBytes).Clear();
                i++;
                continue;
            }

            var run = 1;
            while (i + run < entries.Length && entries[i + run].IsMapped && IsNext(e.Phys, entries[i + run].Phys, run))
            {
                run++;
            }

            runs[count++] = (e.Phys, i << BlockShift, run << BlockShift);
            i += run;
        }

        return count;
    }

    /// <summary>
    /// Writes whole blocks to the live image. The caller holds the region locks of the range, so no
    /// other write or unmap touches these blocks meanwhile.
    /// </summary>
    public void WriteBlocks(long firstBlock, ReadOnlySpan<byte> data) => WriteBlocks(firstBlock, new BlockSource(data));

    /// <inheritdoc cref="WriteBlocks(long, ReadOnlySpan{byte})"/>
    public void WriteBlocks(long firstBlock, scoped in BlockSource source) => WriteBlocks(firstBlock, source, atomic: false);

    private void WriteBlocks(long firstBlock, scoped in BlockSource source, bool atomic)
    {
        var count = source.LengthBytes >> BlockShift;
        var old = ArrayPool<MapEntry>.Shared.Rent(count);
        var inPlace = ArrayPool<bool>.Shared.Rent(count);
        var target = ArrayPool<ulong>.Shared.Rent(count);
        List<(ulong Phys, int Count)>? allocated = null;
        try
        {
            var needNew = 0;
            lock (_mapLock)
            {
                for (var i = 0; i < count; i++)
                {
                    var c = GetLiveLocked(firstBlock + i);
                    old[i] = c;

                    // Overwrite in place where the live version is ours alone (born after every snapshot),
                    // unless the write must be atomic: an in-place overwrite torn by a crash is a mix.
                    inPlace[i] = !atomic && c.IsMapped && !SharedLocked(c);
                    target[i] = c.Phys;
                    needNew += inPlace[i] ? 0 : 1;
                }
            }

            // A write that is redirected in part (after a snapshot, over blocks some of which were
            // rewritten since) is redirected whole: fresh blocks between old ones it would overwrite in
            // place cut it into a store write per run (a 1 MiB write over a range with 18 such blocks
            // was ~37 RADOS operations), while fresh blocks for all of it are one run, the same bytes
            // written, and the old blocks it leaves are freed at the commit as for any redirect.
            if (needNew > 0 && needNew < count)
            {
                Array.Clear(inPlace, 0, count);
                needNew = count;
            }

            // Redirect on write: fresh blocks for everything else, allocated in runs before anything
            // is written (a full pool fails the write whole), then the data goes out front to back.
            if (needNew > 0)
            {
                allocated = Allocate(inPlace, target, count);
            }

            var i0 = 0;
            while (i0 < count)
            {
                var run = 1;
                var fresh = !inPlace[i0];
                while (i0 + run < count && IsNext(target[i0], target[i0 + run], run))
                {
                    fresh |= !inPlace[i0 + run];
                    run++;
                }

                source.WriteTo(_pool, target[i0], i0 << BlockShift, run << BlockShift, fresh);
                i0 += run;
            }

            if (needNew == 0)
            {
                return;
            }

            lock (_mapLock)
            {
                if (atomic)
                {
                    SwitchAtomicLocked(firstBlock, count, inPlace, target);
                }
                else
                {
                    SwitchLocked(firstBlock, count, inPlace, target);
                }
            }

            allocated = null;
        }
        finally
        {
            if (allocated is not null)
            {
                // The write failed before the map pointed at its fresh blocks: give them back.
                foreach (var (phys, n) in allocated)
                {
                    _pool.Allocator.Cancel(phys, n);
                }
            }

            ArrayPool<MapEntry>.Shared.Return(old);
            ArrayPool<bool>.Shared.Return(inPlace);
            ArrayPool<ulong>.Shared.Return(target);
        }
    }

    // Points the live map at the fresh blocks of a write (the ones not overwritten in place).
    private void SwitchLocked(long firstBlock, int count, bool[] inPlace, ulong[] target)
    {
        var epoch = Record.Epoch;
        for (var i = 0; i < count; i++)
        {
            if (inPlace[i])
            {
                continue;
            }

            var block = firstBlock + i;
            var c = GetLiveLocked(block);
            if (SharedLocked(c))
            {
                _pendingHistory.TryAdd(block, c);
            }
            else if (c.IsMapped)
            {
                _pendingFrees.Add(c.Phys);
            }

            SetLiveLocked(block, MapEntry.Mapped(target[i], epoch));
            _pendingAllocs.Add(target[i]);
        }
    }

    private static bool IsNext(ulong first, ulong candidate, int distance) =>
        candidate == first + (ulong)distance && Map.Phys.Store(candidate) == Map.Phys.Store(first);

    /// <summary>Sets <paramref name="target"/> to fresh blocks wherever the write is not in place.</summary>
    private List<(ulong Phys, int Count)> Allocate(bool[] inPlace, ulong[] target, int count)
    {
        var allocated = new List<(ulong Phys, int Count)>();
        try
        {
            var i = 0;
            while (i < count)
            {
                if (inPlace[i])
                {
                    i++;
                    continue;
                }

                var end = i;
                while (end < count && !inPlace[end])
                {
                    end++;
                }

                while (i < end)
                {
                    var phys = _pool.Allocator.AllocateRun(end - i, out var got);
                    allocated.Add((phys, got));
                    for (var k = 0; k < got; k++)
                    {
                        target[i + k] = phys + (ulong)k;
                    }

                    i += got;
                }
            }

            return allocated;
        }
        catch
        {
            foreach (var (phys, n) in allocated)
            {
                _pool.Allocator.Cancel(phys, n);
            }

            throw;
        }
    }

    /// <summary>Makes whole blocks of the live image read as zeros, freeing what no snapshot needs.</summary>
    public void ZeroBlocks(long firstBlock, long count)
    {
        var end = firstBlock + count;
        var block = firstBlock;
        while (block < end)
        {
            var pageNo = (ulong)block >> MapPage.PageShift;
            var pageEnd = Math.Min(end, (long)(pageNo + 1) << MapPage.PageShift);
            lock (_mapLock)
            {
                var rootWithoutSnapshots = Parent is null && _seers.Count == 0;
                var page = GetPageLocked(pageNo, create: !rootWithoutSnapshots);
                if (page is not null)
                {
                    for (; block < pageEnd; block++)
                    {
                        ZeroBlockLocked(page, block, rootWithoutSnapshots);
                    }
                }
            }

            block = pageEnd;
        }
    }

    private void ZeroBlockLocked(MapPage page, long block, bool rootWithoutSnapshots)
    {
        var index = (int)(block & (MapPage.BlocksPerPage - 1));
        var c = page[index];
        var readsZero = c.Kind == EntryKind.Zero || (c.Kind == EntryKind.Inherit && Parent is null);
        if (readsZero)
        {
            return;
        }

        MapEntry target;
        if (SharedLocked(c))
        {
            _pendingHistory.TryAdd(block, c);
            target = MapEntry.Zero(Record.Epoch);
        }
        else
        {
            if (c.IsMapped)
            {
                _pendingFrees.Add(c.Phys);
            }

            target = rootWithoutSnapshots ? MapEntry.Absent : MapEntry.Zero(c.Birth);
        }

        AccountLocked(block, c, target);
        page[index] = target;
        MarkDirtyLocked(page);
    }

    /// <summary>Allocation state of whole blocks of the image as of an epoch (parents included).</summary>
    public void GetAllocation(long firstBlock, int count, ulong epoch, MapEntry[] result) => Resolve(firstBlock, count, epoch, result);

    /// <summary>
    /// Moves everything changed since the last commit into <paramref name="batch"/>: dirty pages,
    /// history records, and the blocks allocated and freed. Records stay readable from memory until
    /// <see cref="CommitDurable"/> says the batch is on disk.
    /// </summary>
    public void Collect(WriteBatch batch, List<ulong> allocated, List<ulong> freed, long commitSeq)
    {
        lock (_mapLock)
        {
            if (_dirtyPages.Count > 0)
            {
                // A whole page, or a delta of at most MaxSlots records (smaller).
                var buffer = new byte[MapPage.Bytes];
                foreach (var page in _dirtyPages)
                {
                    var key = Keys.LivePageKey(Id, page.Number);
                    var changed = page.ChangedCount;
                    if (page.IsEmpty)
                    {
                        batch.Delete(key);
                    }
                    else if (changed <= MapPageDelta.MaxSlots)
                    {
                        // Only the entries set since the last commit (merged into the stored page by
                        // the store); none set means the store already holds this page as it is.
                        if (changed > 0)
                        {
                            var length = page.SaveChanges(buffer);
                            batch.Merge(key, (ulong)key.Length, buffer, (ulong)length);
                        }
                    }
                    else
                    {
                        page.Save(buffer);
                        batch.Put(key, (ulong)key.Length, buffer, MapPage.Bytes);
                    }

                    page.ClearChanges();
                    page.Dirty = false;
                    page.CollectedSeq = commitSeq;
                }

                _dirtyPages.Clear();
            }

            if (_pendingHistory.Count > 0)
            {
                Span<byte> key = stackalloc byte[Keys.HistoryKeyBytes];
                Span<byte> value = stackalloc byte[MapEntry.Bytes];
                var death = Record.Epoch;
                foreach (var (block, entry) in _pendingHistory)
                {
                    entry.Write(value);
                    Keys.WriteHistoryKey(key, Id, (ulong)block, death);
                    batch.Put(key, value);
                    Keys.WriteDeathKey(key, Id, death, (ulong)block);
                    batch.Put(key, value);
                }

                (_committingHistory, _pendingHistory) = (_pendingHistory, _committingHistory);
                _pendingHistory.Clear();
            }

            CollectCountersLocked(batch);
            allocated.AddRange(_pendingAllocs);
            _pendingAllocs.Clear();
            freed.AddRange(_pendingFrees);
            _pendingFrees.Clear();
        }
    }

    /// <summary>The batch of the last <see cref="Collect"/> is durable: its records are now read from the store.</summary>
    public void CommitDurable()
    {
        lock (_mapLock)
        {
            _committingHistory.Clear();
        }
    }

    /// <summary>Applies a change to the live map made by a snapshot deletion (frozen lineages only).</summary>
    public void ReplaceLive(long block, MapEntry entry)
    {
        lock (_mapLock)
        {
            SetLiveLocked(block, entry);
        }
    }
}
