using System.Numerics;
using RocksDbSharp;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine.Allocation;

/// <summary>
/// Block allocator over the pool's stores, with two bitmaps per store:
/// <c>committed</c> is what the durable metadata references (persisted in 4 KiB chunks in the same
/// batch as the map change), <c>inUse</c> is committed plus blocks handed out to writes in flight
/// plus blocks freed by a commit not yet durable or still visible to a reader. Allocation looks only
/// at <c>inUse</c>, so a block is never used twice and a freed block is reused only after the change
/// that freed it is durable (DESIGN.md, durability contract). Block 0 of every store holds its header.
/// </summary>
internal sealed class Allocator
{
    public const int ChunkBlocks = 32768; // 4 KiB of bitmap per chunk
    private const int WordsPerChunk = ChunkBlocks / 64;

    private readonly Lock _lock = new();
    private readonly List<StoreBits> _stores = [];
    private int _cursorStore;

    public long CapacityBlocks
    {
        get
        {
            lock (_lock)
            {
                return _stores.Sum(s => s.CapacityBlocks - 1);
            }
        }
    }

    public long InUseBlocks
    {
        get
        {
            lock (_lock)
            {
                return _stores.Sum(s => s.InUseCount);
            }
        }
    }

    public long CommittedBlocks
    {
        get
        {
            lock (_lock)
            {
                return _stores.Sum(s => s.CommittedCount);
            }
        }
    }

    public int StoreCount
    {
        get
        {
            lock (_lock)
            {
                return _stores.Count;
            }
        }
    }

    public void AddStore(long capacityBlocks)
    {
        lock (_lock)
        {
            _stores.Add(new StoreBits(capacityBlocks));
        }
    }

    public void Grow(int store, long capacityBlocks)
    {
        lock (_lock)
        {
            _stores[store].Grow(capacityBlocks);
        }
    }

    public long StoreCapacityBlocks(int store)
    {
        lock (_lock)
        {
            return _stores[store].CapacityBlocks;
        }
    }

    /// <summary>Loads a persisted chunk at open: those blocks are committed and in use.</summary>
    public void LoadChunk(int store, uint chunk, ReadOnlySpan<byte> bytes)
    {
        lock (_lock)
        {
            var s = _stores[store];
            s.EnsureWords(((long)chunk + 1) * ChunkBlocks);
            for (var i = 0; i < WordsPerChunk && (i * 8) + 8 <= bytes.Length; i++)
            {
                var word = BitConverter.ToUInt64(bytes.Slice(i * 8, 8));
                var w = (int)(chunk * WordsPerChunk) + i;
                s.CommittedCount += BitOperations.PopCount(word) - BitOperations.PopCount(s.Committed[w]);
                s.InUseCount += BitOperations.PopCount(word) - BitOperations.PopCount(s.InUse[w]);
                s.Committed[w] = word;
                s.InUse[w] = word;
            }
        }
    }

    /// <summary>
    /// Hands out a run of up to <paramref name="wanted"/> contiguous free blocks (at least one).
    /// Throws <see cref="StorageError.NoSpace"/> when the pool is full.
    /// </summary>
    public ulong AllocateRun(int wanted, out int got)
    {
        lock (_lock)
        {
            for (var attempt = 0; attempt <= _stores.Count; attempt++)
            {
                var si = (_cursorStore + attempt) % _stores.Count;
                if (_stores[si].TryAllocate(wanted, out var block, out got))
                {
                    _cursorStore = si;
                    return Phys.Make(si, block);
                }
            }

            got = 0;
            throw new StorageException(StorageError.NoSpace, "the pool is full: free space by deleting snapshots or volumes, or grow the pool with 'tidemark pool add-store'");
        }
    }

    /// <summary>Returns blocks handed out by <see cref="AllocateRun"/> that never became part of the map.</summary>
    public void Cancel(ulong phys, int count)
    {
        lock (_lock)
        {
            var s = _stores[Map.Phys.Store(phys)];
            for (var i = 0; i < count; i++)
            {
                s.ClearInUse(Map.Phys.Block(phys) + i);
            }
        }
    }

    /// <summary>
    /// Applies a commit to the committed bitmap and adds the changed chunks to the batch.
    /// <paramref name="allocated"/> are blocks the batch makes referenced, <paramref name="freed"/> blocks it unreferences.
    /// </summary>
    public void ApplyCommit(List<ulong> allocated, List<ulong> freed, WriteBatch batch)
    {
        lock (_lock)
        {
            var dirty = new HashSet<(int Store, uint Chunk)>();
            foreach (var p in allocated)
            {
                var s = _stores[Map.Phys.Store(p)];
                s.SetCommitted(Map.Phys.Block(p), true);
                dirty.Add((Map.Phys.Store(p), (uint)(Map.Phys.Block(p) / ChunkBlocks)));
            }

            foreach (var p in freed)
            {
                var s = _stores[Map.Phys.Store(p)];
                s.SetCommitted(Map.Phys.Block(p), false);
                dirty.Add((Map.Phys.Store(p), (uint)(Map.Phys.Block(p) / ChunkBlocks)));
            }

            var buffer = new byte[WordsPerChunk * 8];
            foreach (var (store, chunk) in dirty)
            {
                var s = _stores[store];
                var words = s.Committed.AsSpan((int)(chunk * WordsPerChunk), WordsPerChunk);
                for (var i = 0; i < WordsPerChunk; i++)
                {
                    BitConverter.TryWriteBytes(buffer.AsSpan(i * 8), words[i]);
                }

                batch.Put(Keys.BitmapKey(store, chunk), buffer);
            }
        }
    }

    /// <summary>Makes blocks freed by a durable commit available again.</summary>
    public void Release(List<ulong> freed)
    {
        lock (_lock)
        {
            foreach (var p in freed)
            {
                _stores[Map.Phys.Store(p)].ClearInUse(Map.Phys.Block(p));
            }
        }
    }

    public bool IsCommitted(ulong phys)
    {
        lock (_lock)
        {
            var si = Map.Phys.Store(phys);
            return si < _stores.Count && _stores[si].IsCommitted(Map.Phys.Block(phys));
        }
    }

    /// <summary>Every committed block, for verify.</summary>
    public List<ulong> CommittedList()
    {
        lock (_lock)
        {
            var list = new List<ulong>();
            for (var si = 0; si < _stores.Count; si++)
            {
                var words = _stores[si].Committed;
                for (var w = 0; w < words.Length; w++)
                {
                    var word = words[w];
                    while (word != 0)
                    {
                        var bit = BitOperations.TrailingZeroCount(word);
                        list.Add(Map.Phys.Make(si, ((long)w * 64) + bit));
                        word &= word - 1;
                    }
                }
            }

            return list;
        }
    }

    private sealed class StoreBits
    {
        private const int MaxAlignedRunBlocks = 256;
        private long _cursor = 1;

        public StoreBits(long capacityBlocks)
        {
            CapacityBlocks = capacityBlocks;
            EnsureWords(capacityBlocks);
        }

        public long CapacityBlocks { get; private set; }

        public ulong[] Committed { get; private set; } = [];

        public ulong[] InUse { get; private set; } = [];

        public long CommittedCount { get; set; }

        public long InUseCount { get; set; }

        public void Grow(long capacityBlocks)
        {
            CapacityBlocks = Math.Max(CapacityBlocks, capacityBlocks);
            EnsureWords(CapacityBlocks);
        }

        public void EnsureWords(long blocks)
        {
            // Whole chunks, so persisted chunks always cover a full 4 KiB of bitmap.
            var words = (int)(((blocks + ChunkBlocks - 1) / ChunkBlocks) * WordsPerChunk);
            if (words > Committed.Length)
            {
                var c = Committed;
                var u = InUse;
                Array.Resize(ref c, words);
                Array.Resize(ref u, words);
                Committed = c;
                InUse = u;
            }
        }

        public bool TryAllocate(int wanted, out long block, out int got)
        {
            var cap = CapacityBlocks;
            var start = _cursor >= cap ? 1 : _cursor;

            // A run of several blocks starts at a multiple of its size (up to 1 MiB) when such a
            // place is free ahead: the store's file then holds each large write in whole aligned
            // pieces, which the page cache keeps in large folios (a 4K read of the store ran 10%
            // slower than of a plain file written the same way while runs sat one block off).
            if (wanted > 1)
            {
                var align = (long)Math.Min(MaxAlignedRunBlocks, 1 << BitOperations.Log2((uint)wanted));
                var aligned = (start + align - 1) & ~(align - 1);
                var b = aligned < cap ? FindFree(aligned, cap) : -1;
                if (b >= 0 && (b & (align - 1)) == 0)
                {
                    block = b;
                    got = TakeRun(b, wanted, cap);
                    return true;
                }
            }

            for (var pass = 0; pass < 2; pass++)
            {
                var from = pass == 0 ? start : 1;
                var to = pass == 0 ? cap : start;
                var b = FindFree(from, to);
                if (b >= 0)
                {
                    block = b;
                    got = TakeRun(b, wanted, cap);
                    return true;
                }
            }

            block = -1;
            got = 0;
            return false;
        }

        /// <summary>Marks the free block <paramref name="b"/> and the free ones after it in use, up to <paramref name="wanted"/>.</summary>
        private int TakeRun(long b, int wanted, long cap)
        {
            var got = 1;
            SetInUse(b);
            while (got < wanted && b + got < cap && !IsInUse(b + got))
            {
                SetInUse(b + got);
                got++;
            }

            _cursor = b + got;
            return got;
        }

        public bool IsCommitted(long b) => b < (long)Committed.Length * 64 && (Committed[b >> 6] & (1UL << (int)(b & 63))) != 0;

        public void SetCommitted(long b, bool value)
        {
            ref var w = ref Committed[b >> 6];
            var mask = 1UL << (int)(b & 63);
            var was = (w & mask) != 0;
            if (was != value)
            {
                w ^= mask;
                CommittedCount += value ? 1 : -1;
            }

            if (value)
            {
                SetInUse(b);
            }
        }

        public void ClearInUse(long b)
        {
            ref var w = ref InUse[b >> 6];
            var mask = 1UL << (int)(b & 63);
            if ((w & mask) != 0 && (Committed[b >> 6] & mask) == 0)
            {
                w &= ~mask;
                InUseCount--;
            }
        }

        private bool IsInUse(long b) => (InUse[b >> 6] & (1UL << (int)(b & 63))) != 0;

        private void SetInUse(long b)
        {
            ref var w = ref InUse[b >> 6];
            var mask = 1UL << (int)(b & 63);
            if ((w & mask) == 0)
            {
                w |= mask;
                InUseCount++;
            }
        }

        private long FindFree(long from, long to)
        {
            var b = Math.Max(from, 1);
            while (b < to)
            {
                var wi = (int)(b >> 6);
                var word = InUse[wi] | ((1UL << (int)(b & 63)) - 1);
                if (word != ulong.MaxValue)
                {
                    var found = ((long)wi << 6) + BitOperations.TrailingZeroCount(~word);
                    return found < to ? found : -1;
                }

                b = ((long)wi + 1) << 6;
            }

            return -1;
        }
    }
}
