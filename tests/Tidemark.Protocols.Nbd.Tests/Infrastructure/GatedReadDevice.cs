using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

/// <summary>
/// A memory device that says how many reads it serves well at once and whose reads block until the
/// test releases them (by offset, or all), so a test sees which reads are in flight together and
/// decides in which order they finish. Every wait is bounded.
/// </summary>
internal sealed class GatedReadDevice(long sizeBytes, int preferredConcurrency) : ForwardingDevice(new MemoryBlockDevice(sizeBytes))
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly object _lock = new();
    private readonly HashSet<long> _released = [];
    private readonly Dictionary<long, StorageError> _failures = [];
    private readonly List<string?> _readerThreads = [];
    private bool _open;
    private int _arrived;
    private int _inFlight;
    private int _peakInFlight;

    public MemoryBlockDevice Memory => (MemoryBlockDevice)Inner;

    public override int PreferredConcurrency => preferredConcurrency;

    /// <summary>A fixed delay per read instead of gates (for real clients), when positive.</summary>
    public TimeSpan Delay { get; init; }

    public int Arrived
    {
        get
        {
            lock (_lock)
            {
                return _arrived;
            }
        }
    }

    public int PeakInFlight
    {
        get
        {
            lock (_lock)
            {
                return _peakInFlight;
            }
        }
    }

    /// <summary>The names of the threads that called <see cref="Read"/>.</summary>
    public string?[] ReaderThreads
    {
        get
        {
            lock (_lock)
            {
                return [.. _readerThreads];
            }
        }
    }

    /// <summary>The read at <paramref name="offsetBytes"/> fails with <paramref name="error"/> once released.</summary>
    public void FailAt(long offsetBytes, StorageError error)
    {
        lock (_lock)
        {
            _failures[offsetBytes] = error;
        }
    }

    public void Release(long offsetBytes)
    {
        lock (_lock)
        {
            _released.Add(offsetBytes);
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Lets every read through, now and later.</summary>
    public void Open()
    {
        lock (_lock)
        {
            _open = true;
            Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Waits until <paramref name="count"/> reads have reached the device in total.</summary>
    public void WaitArrived(int count)
    {
        lock (_lock)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (_arrived < count)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero)
                {
                    Assert.Fail($"{_arrived} reads reached the device, not {count}");
                }

                Monitor.Wait(_lock, left);
            }
        }
    }

    public override void Read(long offsetBytes, Span<byte> destination)
    {
        StorageError? failure;
        lock (_lock)
        {
            _arrived++;
            _inFlight++;
            _peakInFlight = Math.Max(_peakInFlight, _inFlight);
            _readerThreads.Add(Thread.CurrentThread.Name);
            Monitor.PulseAll(_lock);
            var deadline = DateTime.UtcNow + Timeout;
            while (Delay <= TimeSpan.Zero && !_open && !_released.Contains(offsetBytes) && DateTime.UtcNow < deadline)
            {
                Monitor.Wait(_lock, TimeSpan.FromMilliseconds(100));
            }

            failure = _failures.TryGetValue(offsetBytes, out var error) ? error : null;
        }

        try
        {
            if (Delay > TimeSpan.Zero)
            {
                Thread.Sleep(Delay);
            }

            if (failure is { } e)
            {
                throw new StorageException(e, $"injected {e}");
            }

            Inner.Read(offsetBytes, destination);
        }
        finally
        {
            lock (_lock)
            {
                _inFlight--;
            }
        }
    }
}
