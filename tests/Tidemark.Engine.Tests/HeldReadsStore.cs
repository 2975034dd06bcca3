using Tidemark.Engine.Storage;

namespace Tidemark.Engine.Tests;

/// <summary>
/// A file store whose asynchronous reads, while <see cref="Hold"/> is set, stay pending until the
/// test ends them (in any order, with data or with an error), as a RADOS store's do until librados
/// calls back. The data is read when the test ends the read, so a block reused too early would show.
/// </summary>
internal sealed class HeldReadsStore(IBackingStore inner) : IBackingStore
{
    private readonly Lock _lock = new();
    private readonly List<HeldRead> _held = [];

    public bool Hold { get; set; }

    public string Location => inner.Location;

    public long CapacityBytes => inner.CapacityBytes;

    public int PreferredConcurrency => 32;

    /// <summary>The reads started and not ended yet, oldest first.</summary>
    public HeldRead[] Held
    {
        get
        {
            lock (_lock)
            {
                return [.. _held];
            }
        }
    }

    public static PoolOptions Options(Action<HeldReadsStore> opened) => new()
    {
        StoreFactory = (path, capacity, create) =>
        {
            var store = new HeldReadsStore(create ? FileBackingStore.Create(path, capacity) : FileBackingStore.Open(path, capacity));
            opened(store);
            return store;
        },
    };

    public void Read(long offsetBytes, Span<byte> destination) => inner.Read(offsetBytes, destination);

    public void ReadScattered(ReadOnlySpan<StoreRead> reads, Span<byte> destination) => inner.ReadScattered(reads, destination);

    public void Write(long offsetBytes, ReadOnlySpan<byte> source) => inner.Write(offsetBytes, source);

    public void WriteFresh(long offsetBytes, ReadOnlySpan<byte> source) => inner.WriteFresh(offsetBytes, source);

    public void Flush() => inner.Flush();

    public void Discard(long offsetBytes, long lengthBytes) => inner.Discard(offsetBytes, lengthBytes);

    public void Dispose() => inner.Dispose();

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination) =>
        ReadScatteredAsync([new StoreRead(offsetBytes, 0, destination.Length)], destination);

    public ValueTask ReadScatteredAsync(ReadOnlySpan<StoreRead> reads, Memory<byte> destination)
    {
        if (!Hold)
        {
            inner.ReadScattered(reads, destination.Span);
            return default;
        }

        var read = new HeldRead(this, reads.ToArray(), destination);
        lock (_lock)
        {
            _held.Add(read);
        }

        return new ValueTask(read.Done.Task);
    }

    /// <summary>A read the store holds: <see cref="End"/> reads its data now (or fails it) and completes it on the caller's thread.</summary>
    public sealed class HeldRead(HeldReadsStore store, StoreRead[] reads, Memory<byte> destination)
    {
        public TaskCompletionSource Done { get; } = new();

        public StoreRead[] Reads => reads;

        public void End(Exception? error = null)
        {
            lock (store._lock)
            {
                store._held.Remove(this);
            }

            if (error is not null)
            {
                Done.SetException(error);
                return;
            }

            store.ReadScattered(reads, destination.Span);
            Done.SetResult();
        }
    }
}
