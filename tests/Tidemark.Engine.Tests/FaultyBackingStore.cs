using Tidemark.Engine.Storage;

namespace Tidemark.Engine.Tests;

/// <summary>
/// An in-memory store with a volatile write cache, like a disk: writes are visible at once but only
/// durable after <see cref="Flush"/>. <see cref="PowerLoss"/> keeps each unflushed write whole, drops it,
/// or tears it (a prefix of its 512-byte sectors survives), at random.
/// </summary>
internal sealed class FaultyBackingStore(string location, long capacityBytes) : IBackingStore
{
    private const int Sector = 512;
    private readonly Dictionary<long, byte[]> _durable = [];
    private readonly List<(long Offset, byte[] Data)> _pending = [];
    private readonly Lock _lock = new();

    public string Location { get; } = location;

    public long CapacityBytes { get; } = capacityBytes;

    public int Flushes { get; private set; }

    /// <summary>Write calls so far (how many store operations the engine made of its writes).</summary>
    public int Writes { get; private set; }

    /// <summary>While set, every flush fails as a dying disk's would (and makes nothing durable).</summary>
    public bool FailFlushes { get; set; }

    public void Read(long offsetBytes, Span<byte> destination)
    {
        lock (_lock)
        {
            for (var pos = 0; pos < destination.Length; pos += Sector)
            {
                var sector = (offsetBytes + pos) / Sector;
                if (_durable.TryGetValue(sector, out var data))
                {
                    data.CopyTo(destination.Slice(pos, Sector));
                }
                else
                {
                    destination.Slice(pos, Sector).Clear();
                }
            }

            foreach (var (offset, data) in _pending)
            {
                var from = Math.Max(offset, offsetBytes);
                var to = Math.Min(offset + data.Length, offsetBytes + destination.Length);
                if (from < to)
                {
                    data.AsSpan((int)(from - offset), (int)(to - from)).CopyTo(destination[(int)(from - offsetBytes)..]);
                }
            }
        }
    }

    public void Write(long offsetBytes, ReadOnlySpan<byte> source)
    {
        lock (_lock)
        {
            Writes++;
            _pending.Add((offsetBytes, source.ToArray()));
        }
    }

    public void Flush()
    {
        lock (_lock)
        {
            if (FailFlushes)
            {
                throw new IOException("injected: the store failed to flush");
            }

            foreach (var (offset, data) in _pending)
            {
                Apply(offset, data, data.Length);
            }

            _pending.Clear();
            Flushes++;
        }
    }

    public void PowerLoss(Random rng)
    {
        lock (_lock)
        {
            foreach (var (offset, data) in _pending)
            {
                switch (rng.Next(10))
                {
                    case < 5:
                        break; // lost
                    case < 8:
                        Apply(offset, data, data.Length);
                        break;
                    default:
                        Apply(offset, data, rng.Next(data.Length / Sector) * Sector); // torn
                        break;
                }
            }

            _pending.Clear();
        }
    }

    public void Dispose()
    {
    }

    private void Apply(long offset, byte[] data, int length)
    {
        for (var pos = 0; pos < length; pos += Sector)
        {
            _durable[(offset + pos) / Sector] = data.AsSpan(pos, Sector).ToArray();
        }
    }
}
