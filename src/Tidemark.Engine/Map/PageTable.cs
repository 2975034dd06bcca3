using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Tidemark.Engine.Map;

/// <summary>
/// A lineage's cached map pages by page number, read without a lock: a directory of chunks of
/// <see cref="ChunkPages"/> page references, indexed directly. A lookup touches the directory slot,
/// the chunk's slot and the page; a hash map touched a bucket array, a node and then the page, and
/// on this machine every distinct memory page a 4 KiB read touches costs a TLB miss after the
/// syscall before it (docs/BENCHMARKS.md, engine run 7).
/// </summary>
/// <remarks>
/// Mutated under the owning lineage's map lock only. The directory grows to the highest page number
/// cached (8 bytes per 256 MiB of volume); a chunk is dropped when its last page is evicted, so
/// chunks cost at most 2 KiB per cached page and usually far less (neighbouring pages share one).
/// A reader may see a page that is being evicted: the grace period keeps it intact until the
/// reader is done (<see cref="PageRecycler"/>).
/// </remarks>
internal sealed class PageTable
{
    public const int ChunkShift = 8;
    public const int ChunkPages = 1 << ChunkShift;

    private Chunk?[] _directory = new Chunk?[16];

    /// <summary>Pages held.</summary>
    public int Count { get; private set; }

    public bool TryGet(ulong pageNumber, [NotNullWhen(true)] out MapPage? page)
    {
        var directory = Volatile.Read(ref _directory);
        var index = pageNumber >> ChunkShift;
        if (index < (ulong)directory.Length && Volatile.Read(ref directory[index]) is { } chunk)
        {
            page = Volatile.Read(ref chunk.Pages[(int)(pageNumber & (ChunkPages - 1))]);
            return page is not null;
        }

        page = null;
        return false;
    }

    /// <summary>Adds or replaces the page with <paramref name="pageNumber"/> (under the map lock).</summary>
    public void Set(ulong pageNumber, MapPage page)
    {
        var index = pageNumber >> ChunkShift;
        var directory = _directory;
        if (index >= (ulong)directory.Length)
        {
            var grown = new Chunk?[(int)Math.Max(index + 1, (ulong)directory.Length * 2)];
            directory.CopyTo(grown, 0);
            Volatile.Write(ref _directory, grown);
            directory = grown;
        }

        var chunk = directory[index];
        if (chunk is null)
        {
            chunk = new Chunk();
            Volatile.Write(ref directory[index], chunk);
        }

        ref var slot = ref chunk.Pages[(int)(pageNumber & (ChunkPages - 1))];
        if (slot is null)
        {
            chunk.Count++;
            Count++;
        }

        Volatile.Write(ref slot, page);
    }

    /// <summary>Drops the page with <paramref name="pageNumber"/>, if held (under the map lock).</summary>
    public void Remove(ulong pageNumber)
    {
        var index = pageNumber >> ChunkShift;
        var directory = _directory;
        if (index >= (ulong)directory.Length || directory[index] is not { } chunk)
        {
            return;
        }

        ref var slot = ref chunk.Pages[(int)(pageNumber & (ChunkPages - 1))];
        if (slot is null)
        {
            return;
        }

        Volatile.Write(ref slot, null);
        Count--;
        if (--chunk.Count == 0)
        {
            Volatile.Write(ref directory[index], null);
        }
    }

    /// <summary>Drops every page (under the map lock).</summary>
    public void Clear()
    {
        Volatile.Write(ref _directory, new Chunk?[16]);
        Count = 0;
    }

    private sealed class Chunk
    {
        public PageRefs Pages;
        public int Count;
    }

    [InlineArray(ChunkPages)]
    private struct PageRefs
    {
        private MapPage? _first;
    }
}
