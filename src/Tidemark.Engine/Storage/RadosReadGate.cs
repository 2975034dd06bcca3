namespace Tidemark.Engine.Storage;

/// <summary>A read that waits for room in a <see cref="RadosReadGate"/> without a thread: run on the thread pool once admitted.</summary>
internal interface IReadGateWaiter : IThreadPoolWorkItem
{
    int Pieces { get; }

    long Bytes { get; }
}

/// <summary>
/// Bounds the reads a RADOS store has in flight across all its callers (ADR 0017): at most
/// <see cref="MaxReads"/> object reads and <see cref="MaxBytes"/> bytes, so many connections reading
/// at once queue here instead of piling unbounded work onto the OSDs. A read takes all its pieces at
/// once (a caller never holds some while waiting for more, so two large reads cannot deadlock), and
/// a read larger than the byte bound still goes when nothing else is in flight. A synchronous reader
/// waits in <see cref="Enter"/>; an asynchronous one (ADR 0021) is queued by
/// <see cref="TryEnterOrQueue"/> and started on the thread pool by the <see cref="Exit"/> that makes
/// room for it (never on the thread that exits, which may be librados's completion thread).
/// </summary>
internal sealed class RadosReadGate
{
    /// <summary>Object reads in flight at once, at most (the same bound as writes).</summary>
    public const int MaxReads = 64;

    /// <summary>Bytes being read at once, at most.</summary>
    public const long MaxBytes = 64L << 20;

    // Monitor, not Lock: a caller waits on it for room.
    private readonly object _lock = new();
    private readonly Queue<IReadGateWaiter> _waiting = new();
    private int _reads;
    private long _bytes;
    private int _peak;

    /// <summary>The most object reads that were in flight at once since the store opened.</summary>
    public int PeakReads => Volatile.Read(ref _peak);

    /// <summary>Asynchronous reads waiting for room now.</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _waiting.Count;
            }
        }
    }

    public void Enter(int pieces, long bytes)
    {
        lock (_lock)
        {
            while (!Fits(pieces, bytes))
            {
                Monitor.Wait(_lock);
            }

            Take(pieces, bytes);
        }
    }

    /// <summary>
    /// Takes room for <paramref name="read"/> and returns true, or queues it behind the reads that
    /// wait already (first come, first served) and returns false: it is then run on the thread pool
    /// once an <see cref="Exit"/> made room, holding it.
    /// </summary>
    public bool TryEnterOrQueue(IReadGateWaiter read)
    {
        lock (_lock)
        {
            if (_waiting.Count == 0 && Fits(read.Pieces, read.Bytes))
            {
                Take(read.Pieces, read.Bytes);
                return true;
            }

            _waiting.Enqueue(read);
            return false;
        }
    }

    public void Exit(int pieces, long bytes)
    {
        lock (_lock)
        {
            _reads -= pieces;
            _bytes -= bytes;
            Monitor.PulseAll(_lock);
            if (_waiting.Count == 0)
            {
                return;
            }
        }

        while (true)
        {
            IReadGateWaiter? admitted = null;
            lock (_lock)
            {
                if (_waiting.TryPeek(out var next) && Fits(next.Pieces, next.Bytes))
                {
                    admitted = _waiting.Dequeue();
                    Take(admitted.Pieces, admitted.Bytes);
                }
            }

            if (admitted is null)
            {
                return;
            }

            ThreadPool.UnsafeQueueUserWorkItem(admitted, preferLocal: false);
        }
    }

    /// <summary>Waits until no read is in flight or waiting (the store is closing).</summary>
    public void WaitForNone()
    {
        lock (_lock)
        {
            while (_reads > 0 || _waiting.Count > 0)
            {
                Monitor.Wait(_lock);
            }
        }
    }

    private bool Fits(int pieces, long bytes) => _reads == 0 || (_reads + pieces <= MaxReads && _bytes + bytes <= MaxBytes);

    private void Take(int pieces, long bytes)
    {
        _reads += pieces;
        _bytes += bytes;
        _peak = Math.Max(_peak, _reads);
    }
}
