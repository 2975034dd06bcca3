using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests.TestHost;

/// <summary>
/// A memory device that says it serves many reads at once (as a RADOS-backed volume does) and holds
/// every <see cref="ReadAsync"/> until the test releases it, in the order it chooses, completing it on
/// another thread (as librados's finisher does); reads may be made to fail. Synchronous reads are
/// counted so a test sees which path the target took.
/// </summary>
internal sealed class HeldReadDevice(long sizeBytes, int preferredConcurrency) : ForwardingDevice(new MemoryBlockDevice(sizeBytes)), IBlockDevice
{
    private readonly object _lock = new();
    private readonly List<Held> _held = [];
    private readonly Dictionary<long, StorageError> _failures = [];
    private int _asyncReads;
    private int _syncReads;
    private int _peakHeld;

    public override int PreferredConcurrency => preferredConcurrency;

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

    public int SyncReads
    {
        get
        {
            lock (_lock)
            {
                return _syncReads;
            }
        }
    }

    public int PeakHeld
    {
        get
        {
            lock (_lock)
            {
                return _peakHeld;
            }
        }
    }

    public int HeldCount
    {
        get
        {
            lock (_lock)
            {
                return _held.Count;
            }
        }
    }

    /// <summary>Reads starting at <paramref name="offsetBytes"/> fail with <paramref name="error"/>.</summary>
    public void FailAt(long offsetBytes, StorageError error)
    {
        lock (_lock)
        {
            _failures[offsetBytes] = error;
        }
    }

    public override void Read(long offsetBytes, Span<byte> destination)
    {
        lock (_lock)
        {
            _syncReads++;
        }

        Inner.Read(offsetBytes, destination);
    }

    /// <summary>When set, reads are not held: each ends by itself after a random delay of up to this long, on a timer thread.</summary>
    public TimeSpan? RandomDelay { get; init; }

    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        // Continuations run on the releasing thread, as on librados's.
        var done = new TaskCompletionSource();
        if (RandomDelay is { } most)
        {
            lock (_lock)
            {
                _asyncReads++;
            }

            _ = Task.Delay(Random.Shared.Next((int)most.TotalMilliseconds + 1), CancellationToken.None).ContinueWith(
                _ =>
                {
                    Inner.Read(offsetBytes, destination.Span);
                    done.SetResult();
                },
                TaskScheduler.Default);
            return new ValueTask(done.Task);
        }

        lock (_lock)
        {
            _asyncReads++;
            _held.Add(new Held(offsetBytes, destination, done));
            _peakHeld = Math.Max(_peakHeld, _held.Count);
        }

        return new ValueTask(done.Task);
    }

    /// <summary>Waits until at least <paramref name="count"/> reads are held.</summary>
    public async Task WaitHeldAsync(int count)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (HeldCount < count)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{HeldCount} reads held, expected {count} ({AsyncReads} asynchronous and {SyncReads} synchronous reads so far)");
            await Task.Delay(5);
        }
    }

    /// <summary>Ends the held reads (at most <paramref name="count"/>), newest first, on another thread.</summary>
    public Task ReleaseAsync(int count = int.MaxValue)
    {
        List<Held> taken;
        lock (_lock)
        {
            taken = [.. _held.AsEnumerable().Reverse().Take(count)];
            foreach (var held in taken)
            {
                _held.Remove(held);
            }
        }

        return Task.Run(() =>
        {
            foreach (var held in taken)
            {
                StorageError? failure;
                lock (_lock)
                {
                    failure = _failures.TryGetValue(held.OffsetBytes, out var error) ? error : null;
                }

                if (failure is { } f)
                {
                    held.Done.SetException(new StorageException(f, "simulated read failure"));
                    continue;
                }

                Inner.Read(held.OffsetBytes, held.Destination.Span);
                held.Done.SetResult();
            }
        });
    }

    private sealed record Held(long OffsetBytes, Memory<byte> Destination, TaskCompletionSource Done);
}
