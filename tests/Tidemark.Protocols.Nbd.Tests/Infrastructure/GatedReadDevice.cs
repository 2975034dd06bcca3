using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

/// <summary>
/// A memory device that says how many reads it serves well at once and whose reads wait until the
/// test releases them (by offset, or all), so a test sees which reads are in flight together and
/// decides in which order they finish. <see cref="Read"/> blocks its caller; <see cref="ReadAsync"/>
/// returns a pending task that the release completes on <see cref="CompletionThreadName"/>, a thread
/// of its own, as librados's finisher completes a RADOS read. Every wait is bounded.
/// </summary>
internal sealed class GatedReadDevice(long sizeBytes, int preferredConcurrency) : ForwardingDevice(new MemoryBlockDevice(sizeBytes)), IBlockDevice
{
    /// <summary>The thread that completes released asynchronous reads.</summary>
    public const string CompletionThreadName = "device completion";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly object _lock = new();
    private readonly HashSet<long> _released = [];
    private readonly Dictionary<long, StorageError> _failures = [];
    private readonly List<string?> _readerThreads = [];
    private readonly List<PendingRead> _pending = [];
    private int _asyncReads;
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

    /// <summary>Reads started with <see cref="ReadAsync"/> (no thread waits for them).</summary>
    public int AsyncReads
    {
        get
        {
            lock (_lock)
            {
                return _asyncReads;
            }
        }
    }

    /// <summary>The names of the threads that called <see cref="Read"/> (a thread waits for each).</summary>
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

        CompleteReleased();
    }

    /// <summary>Lets every read through, now and later.</summary>
    public void Open()
    {
        lock (_lock)
        {
            _open = true;
            Monitor.PulseAll(_lock);
        }

        CompleteReleased();
    }

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        var read = new PendingRead(offsetBytes, destination);
        lock (_lock)
        {
            Arrive();
            _asyncReads++;
            if (Delay <= TimeSpan.Zero && !_open && !_released.Contains(offsetBytes))
            {
                _pending.Add(read);
                _ = ExpireAsync(read);
                return new ValueTask(read.Done.Task);
            }
        }

        if (Delay > TimeSpan.Zero)
        {
            _ = CompleteAfterDelayAsync(read);
        }
        else
        {
            Complete(read); // released already: done before the caller goes on
        }

        return new ValueTask(read.Done.Task);
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
            Arrive();
            _readerThreads.Add(Thread.CurrentThread.Name);
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

    /// <summary>Under _lock: one more read reached the device.</summary>
    private void Arrive()
    {
        _arrived++;
        _inFlight++;
        _peakInFlight = Math.Max(_peakInFlight, _inFlight);
        Monitor.PulseAll(_lock);
    }

    /// <summary>Completes the pending reads released by now, on a thread of the device's own.</summary>
    private void CompleteReleased()
    {
        List<PendingRead> due;
        lock (_lock)
        {
            due = _pending.Where(r => _open || _released.Contains(r.OffsetBytes)).ToList();
            _pending.RemoveAll(due.Contains);
        }

        if (due.Count == 0)
        {
            return;
        }

        var thread = new Thread(() => due.ForEach(Complete)) { Name = CompletionThreadName };
        thread.Start();
        thread.Join();
    }

    private async Task CompleteAfterDelayAsync(PendingRead read)
    {
        await Task.Delay(Delay);
        Complete(read);
    }

    /// <summary>A read nobody released within the timeout completes anyway (a test that failed must not hang).</summary>
    private async Task ExpireAsync(PendingRead read)
    {
        await Task.Delay(Timeout);
        lock (_lock)
        {
            if (!_pending.Remove(read))
            {
                return;
            }
        }

        Complete(read);
    }

    private void Complete(PendingRead read)
    {
        StorageError? failure;
        lock (_lock)
        {
            failure = _failures.TryGetValue(read.OffsetBytes, out var error) ? error : null;
            _inFlight--;
        }

        if (failure is { } e)
        {
            read.Done.SetException(new StorageException(e, $"injected {e}"));
            return;
        }

        Inner.Read(read.OffsetBytes, read.Destination.Span);
        read.Done.SetResult();
    }

    /// <summary>An asynchronous read not completed yet; its task's continuations run on the completing thread, as librados's do.</summary>
    private sealed class PendingRead(long offsetBytes, Memory<byte> destination)
    {
        public long OffsetBytes => offsetBytes;

        public Memory<byte> Destination => destination;

        public TaskCompletionSource Done { get; } = new();
    }
}
