using System.Buffers;
using System.Collections.Concurrent;
using System.Numerics;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

/// <summary>
/// A memory pool that reuses its owner objects (MemoryPool.Shared allocates a new owner per rent),
/// so allocation tests measure the server, not the test pipes; it also counts outstanding rentals
/// so a test can check that everything was given back.
/// </summary>
internal sealed class CachingMemoryPool : MemoryPool<byte>
{
    private readonly ConcurrentDictionary<int, ConcurrentQueue<Owner>> _free = new();
    private int _outstanding;

    public override int MaxBufferSize => 1024 * 1024;

    public int Outstanding => Volatile.Read(ref _outstanding);

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        var size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(minBufferSize, 4096));
        Interlocked.Increment(ref _outstanding);
        var queue = _free.GetOrAdd(size, static _ => new ConcurrentQueue<Owner>());
        if (queue.TryDequeue(out var owner))
        {
            owner.Rented = true;
            return owner;
        }

        return new Owner(this, new byte[size]) { Rented = true };
    }

    protected override void Dispose(bool disposing)
    {
    }

    private void Return(Owner owner)
    {
        Interlocked.Decrement(ref _outstanding);
        _free.GetOrAdd(owner.Array.Length, static _ => new ConcurrentQueue<Owner>()).Enqueue(owner);
    }

    private sealed class Owner(CachingMemoryPool pool, byte[] array) : IMemoryOwner<byte>
    {
        public byte[] Array { get; } = array;

        public bool Rented { get; set; }

        public Memory<byte> Memory => Array;

        public void Dispose()
        {
            if (Rented)
            {
                Rented = false;
                pool.Return(this);
            }
        }
    }
}
