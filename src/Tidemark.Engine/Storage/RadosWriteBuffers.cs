using System.Runtime.InteropServices;

namespace Tidemark.Engine.Storage;

/// <summary>
/// The native copies of a RADOS store's writes in flight (ADR 0017), kept for reuse once written.
/// A copy of <see cref="PooledFromBytes"/> or more is past glibc's mmap threshold (the engine sets it
/// to 128 KiB, <c>NativeHeap</c>), so allocating it afresh is a new mapping whose every page faults in
/// zeroed on the copy and is unmapped again on free: per 1 MiB write, a system call pair, 256 page
/// faults and a megabyte of zeroing before the copy itself. Buffers are handed out in power-of-two
/// sizes up to one object and at most <see cref="MaxSpareBytes"/> of them wait here, so a stream
/// of large writes reuses pages already mapped while idle memory stays bounded. Smaller copies come
/// from the heap, where malloc reuses them anyway.
/// </summary>
internal sealed unsafe class RadosWriteBuffers
{
    /// <summary>Copies from this size up are pooled (below it malloc's heap reuses memory without a mapping).</summary>
    public const int PooledFromBytes = 64 * 1024;

    /// <summary>Spare bytes kept at most: enough for the writes a reap frees before the next start, not a cache.</summary>
    public const long MaxSpareBytes = 16L << 20;

    private readonly Lock _lock = new();

    // One stack per power-of-two size class from PooledFromBytes up to an object.
    private readonly Stack<nint>[] _spare;
    private long _spareBytes;

    public RadosWriteBuffers(int largestBytes)
    {
        var classes = ClassOf(largestBytes) + 1;
        _spare = new Stack<nint>[classes];
        for (var i = 0; i < classes; i++)
        {
            _spare[i] = new Stack<nint>();
        }
    }

    /// <summary>Spare bytes held now (for tests).</summary>
    public long SpareBytes
    {
        get
        {
            lock (_lock)
            {
                return _spareBytes;
            }
        }
    }

    /// <summary>A buffer of at least <paramref name="bytes"/>; give it back with <see cref="Return"/> and the same size.</summary>
    public nint Rent(int bytes)
    {
        if (bytes >= PooledFromBytes)
        {
            var sizeClass = ClassOf(bytes);
            lock (_lock)
            {
                if (_spare[sizeClass].TryPop(out var buffer))
                {
                    _spareBytes -= ClassBytes(sizeClass);
                    return buffer;
                }
            }

            return (nint)NativeMemory.Alloc((nuint)ClassBytes(sizeClass));
        }

        return (nint)NativeMemory.Alloc((nuint)Math.Max(bytes, 1));
    }

    /// <summary>Takes back a buffer from <see cref="Rent"/> (<paramref name="bytes"/> as rented): kept while there is room, else freed.</summary>
    public void Return(nint buffer, int bytes)
    {
        if (bytes >= PooledFromBytes)
        {
            var sizeClass = ClassOf(bytes);
            var size = ClassBytes(sizeClass);
            lock (_lock)
            {
                if (_spareBytes + size <= MaxSpareBytes)
                {
                    _spare[sizeClass].Push(buffer);
                    _spareBytes += size;
                    return;
                }
            }
        }

        NativeMemory.Free((void*)buffer);
    }

    /// <summary>Frees every spare buffer (the store is closing).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            foreach (var stack in _spare)
            {
                while (stack.TryPop(out var buffer))
                {
                    NativeMemory.Free((void*)buffer);
                }
            }

            _spareBytes = 0;
        }
    }

    private static int ClassOf(int bytes) =>
        Math.Max(0, System.Numerics.BitOperations.Log2((uint)Math.Max(bytes, PooledFromBytes) - 1) + 1 - System.Numerics.BitOperations.Log2(PooledFromBytes));

    private static long ClassBytes(int sizeClass) => (long)PooledFromBytes << sizeClass;
}
