namespace Tidemark.Engine.Map;

/// <summary>
/// The live map of 256 consecutive blocks (1 MiB of virtual space) of one lineage, as cached in
/// memory and stored under one key. Mutated only under the owning lineage's map lock.
/// </summary>
internal sealed class MapPage
{
    public const int BlocksPerPage = 256;
    public const int PageShift = 8;
    public const int Bytes = BlocksPerPage * MapEntry.Bytes;

    // Inline in the page object (no separate array): a lookup touches one object, not two.
    private Words _words;

    // The slots set since the last commit collected this page (one bit each), so the commit can
    // store only those entries (MapPageDelta). Only the map lock's holder reads or writes them.
    private ChangedSlots _changed;

    public MapPage(ulong number)
    {
        Number = number;
    }

    public ulong Number { get; private set; }

    /// <summary>
    /// Makes a retired page (see <see cref="PageRecycler"/>) a fresh, empty page for another number.
    /// Only for pages no reader can still hold: the caller waited out a grace period since eviction.
    /// </summary>
    public void Reuse(ulong number)
    {
        ((Span<ulong>)_words).Clear();
        ((Span<ulong>)_changed).Clear();
        Number = number;
        Dirty = false;
        CollectedSeq = 0;
        Referenced = true;
    }

    /// <summary>Changed since the last commit; a dirty page is never evicted.</summary>
    public bool Dirty { get; set; }

    /// <summary>Sequence number of the last commit that saved this page; evictable once that commit is durable.</summary>
    public long CollectedSeq { get; set; }

    /// <summary>Clock bit for eviction: set on every access.</summary>
    public bool Referenced { get; set; }

    public MapEntry this[int index]
    {
        get => new(_words[index * 2], _words[(index * 2) + 1]);
        set
        {
            // Birth first, state last with release semantics: a lock-free reader that sees the new
            // state sees a complete entry; one that sees the old state reads the old version.
            _words[(index * 2) + 1] = value.Word1;
            Volatile.Write(ref _words[index * 2], value.Word0);
            _changed[index >> 6] |= 1UL << index;
        }
    }

    /// <summary>How many entries were set since the last <see cref="ClearChanges"/> (or load).</summary>
    public int ChangedCount
    {
        get
        {
            var count = 0;
            foreach (var bits in _changed)
            {
                count += System.Numerics.BitOperations.PopCount(bits);
            }

            return count;
        }
    }

    /// <summary>Writes the entries set since the last <see cref="ClearChanges"/> as a <see cref="MapPageDelta"/>; returns its length.</summary>
    public int SaveChanges(Span<byte> destination)
    {
        destination[0] = MapPageDelta.Format;
        var length = 1;
        for (var word = 0; word < BlocksPerPage / 64; word++)
        {
            for (var bits = _changed[word]; bits != 0; bits &= bits - 1)
            {
                var slot = (word * 64) + System.Numerics.BitOperations.TrailingZeroCount(bits);
                this[slot].Write(MapPageDelta.Record(destination, ref length, slot));
            }
        }

        return length;
    }

    /// <summary>The page as it is now is what the store will hold once the collected commit is durable.</summary>
    public void ClearChanges() => ((Span<ulong>)_changed).Clear();

    /// <summary>The state word of an entry, read without the map lock (one atomic load).</summary>
    public ulong ReadState(int index) => Volatile.Read(ref _words[index * 2]);

    public bool IsEmpty
    {
        get
        {
            foreach (var w in _words)
            {
                if (w != 0)
                {
                    return false;
                }
            }

            return true;
        }
    }

    public void Load(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Bytes)
        {
            throw new StorageException(StorageError.Corrupt, $"map page {Number} has {bytes.Length} bytes, expected {Bytes}");
        }

        for (var i = 0; i < BlocksPerPage; i++)
        {
            this[i] = MapEntry.Read(bytes[(i * MapEntry.Bytes)..]);
        }

        ClearChanges();
    }

    public void Save(Span<byte> bytes)
    {
        for (var i = 0; i < BlocksPerPage; i++)
        {
            this[i].Write(bytes[(i * MapEntry.Bytes)..]);
        }
    }

    [System.Runtime.CompilerServices.InlineArray(BlocksPerPage * 2)]
    private struct Words
    {
        private ulong _first;
    }

    [System.Runtime.CompilerServices.InlineArray(BlocksPerPage / 64)]
    private struct ChangedSlots
    {
        private ulong _first;
    }
}
