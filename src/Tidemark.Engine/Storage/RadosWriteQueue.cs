namespace Tidemark.Engine.Storage;

/// <summary>
/// The writes of a RADOS store that are in flight (ADR 0017): each started as librados aio on a copy
/// of the data and kept in start order until its completion is reaped. Bounded in count and bytes;
/// a writer past either bound waits for the oldest. Waiting never holds the lock that starting a
/// write needs, so a flush (or a reader waiting for an overlapping write) does not stall writers that
/// start meanwhile: the RADOS pipeline stays full while a commit waits for its data.
/// A write the cluster did not answer in time (ETIMEDOUT: an OSD or monitor away) is held, with its
/// copy, and written again once the cluster answers; until then the store is stalled: flushes and
/// writes fail with an I/O error within the timeout, and nothing acknowledged is dropped.
/// </summary>
internal sealed class RadosWriteQueue
{
    /// <summary>
    /// Writes in flight at once, at most. The OSD's cost per write falls with the writes it has at
    /// once: its op threads, its RocksDB commits (one commit takes every transaction ready) and its
    /// deferred writes serve many per wake-up. At 64 a 4 KiB random-write stream kept about 35 at the
    /// OSD (21 transactions per commit, 1.8 thread sleeps and ~150 µs of OSD CPU per write); RBD
    /// (librbd acknowledges and keeps writing behind) kept ~140 (70 per commit, 0.6 sleeps, ~85 µs).
    /// At 512 Tidemark keeps ~140 too (ADR 0017, BENCHMARKS "4K writes on RADOS"). Small writes only:
    /// the byte bound below still caps the memory (64 MiB, 16 writes of an object).
    /// </summary>
    public const int MaxWrites = 512;

    /// <summary>Bytes of copied write data in flight at once, at most.</summary>
    public const long MaxBytes = 64L << 20;

    /// <summary>
    /// A writer past <see cref="MaxWrites"/> waits until no more than this many are in flight, not
    /// only for the oldest: once the queue is full, waiting for one completion per write put the
    /// writer (the frontend's connection thread) to sleep and woke it again for every 4 KiB write;
    /// this way it sleeps once per <c>MaxWrites - ResumeWrites</c> writes, and 384 in flight still
    /// keep the OSD busy (ADR 0017).
    /// </summary>
    public const int ResumeWrites = 384;

    private readonly nint _io;
    private readonly Func<int, string, StorageException> _failure;
    private readonly RadosWriteBuffers _buffers = new(RadosBackingStore.ObjectBytes);

    // Guards the queue, the counters and the failures; held only to start a write or to take the
    // head off the queue, never while waiting for RADOS.
    private readonly Lock _lock = new();

    // One thread at a time waits for completions and releases them (reaping the head, or
    // recovering after a stall), so a completion is waited for and released exactly once.
    private readonly Lock _reap = new();
    private readonly Queue<PendingWrite> _pending = new();
    private long _bytes;
    private long _started;
    private int _recoveries;
    private StorageException? _firstFailure;
    private StorageException? _stalled;

    public RadosWriteQueue(nint io, Func<int, string, StorageException> failure)
    {
        _io = io;
        _failure = failure;
    }

    private enum Reaped
    {
        Empty,
        One,
        Stalled,
    }

    private enum WriteState
    {
        InFlight,
        Failed,
        Done,
    }

    /// <summary>The first write that failed for good (not a timeout), if any: its data is lost, so no later flush may succeed.</summary>
    public StorageException? FirstFailure
    {
        get
        {
            lock (_lock)
            {
                return _firstFailure;
            }
        }
    }

    /// <summary>Writes in flight or held now (for tests and metrics).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>
    /// Starts one write inside one object; when that takes the queue past its bounds, waits for the
    /// oldest writes until it is back to <see cref="ResumeWrites"/> (and within the byte bound).
    /// </summary>
    public unsafe void Start(string oid, long inObject, ReadOnlySpan<byte> data, long storeOffset)
    {
        RecoverIfStalled();
        var buffer = _buffers.Rent(data.Length);
        data.CopyTo(new Span<byte>((void*)buffer, data.Length));
        var write = new PendingWrite(buffer, data.Length, oid, inObject, storeOffset);
        bool over;
        int resumeAt;
        lock (_lock)
        {
            if (_stalled is { } stalled)
            {
                // Stalled again since the check above: held writes go first, so this one is refused.
                _buffers.Return(buffer, data.Length);
                throw StalledError(stalled);
            }

            // Started under the lock, so start order (which RADOS keeps per object) is queue order.
            var rc = Submit(write);
            if (rc < 0)
            {
                _buffers.Return(buffer, data.Length);
                throw _failure(rc, $"write of {data.Length} bytes at {storeOffset} to {oid}");
            }

            write.Sequence = ++_started;
            _pending.Enqueue(write);
            _bytes += data.Length;

            // Past the count bound: drain to the resume mark (one sleep for many writes), not to just below it.
            resumeAt = _pending.Count > MaxWrites ? ResumeWrites : MaxWrites;
            over = _pending.Count > MaxWrites || _bytes > MaxBytes;
        }

        while (over)
        {
            if (ReapOldest(out _) == Reaped.Stalled)
            {
                // This write is queued and will be written with the held ones; the caller is told
                // the cluster is away, as for any write not known to have landed.
                throw StalledError(CurrentStall());
            }

            lock (_lock)
            {
                over = _pending.Count > resumeAt || _bytes > MaxBytes;
            }
        }
    }

    /// <summary>
    /// Waits for every write started before this call (not for those started meanwhile). Held
    /// writes are written again first; a flush that still finds the cluster away fails.
    /// </summary>
    public void WaitForStarted()
    {
        long upTo;
        lock (_lock)
        {
            upTo = _started;
        }

        var recovered = false;
        while (true)
        {
            lock (_lock)
            {
                if (!_pending.TryPeek(out var head) || head.Sequence > upTo)
                {
                    return;
                }
            }

            if (ReapOldest(out var seen) == Reaped.Stalled)
            {
                if (recovered || !TryRecover(seen))
                {
                    throw StalledError(CurrentStall());
                }

                recovered = true;
            }
        }
    }

    /// <summary>
    /// Waits until no write in flight overlaps [offset, offset+length): a read then sees every write
    /// started before it, without resting on RADOS's per-object ordering of reads after writes.
    /// </summary>
    public void WaitForOverlapping(long storeOffset, long length)
    {
        ReapAnswered();
        var recovered = false;
        while (true)
        {
            long last = 0;
            lock (_lock)
            {
                foreach (var write in _pending)
                {
                    if (write.Offset < storeOffset + length && storeOffset < write.Offset + write.Length)
                    {
                        last = write.Sequence;
                    }
                }
            }

            if (last == 0)
            {
                return;
            }

            // Start order is completion-reaping order: reap up to the newest overlapping write.
            while (true)
            {
                lock (_lock)
                {
                    if (!_pending.TryPeek(out var head) || head.Sequence > last)
                    {
                        break;
                    }
                }

                if (ReapOldest(out var seen) == Reaped.Stalled)
                {
                    // A held write covers this range: its data is not in the cluster yet.
                    if (recovered || !TryRecover(seen))
                    {
                        throw StalledError(CurrentStall());
                    }

                    recovered = true;
                }
            }
        }
    }

    /// <summary>At close: waits for every write still in flight and frees every copy, written or not.</summary>
    public unsafe void Close()
    {
        lock (_reap)
        {
            lock (_lock)
            {
                foreach (var write in _pending)
                {
                    if (write.Completion != 0)
                    {
                        _ = RadosNative.AioWaitForComplete(write.Completion); // at close, only so the copy can go
                        RadosNative.AioRelease(write.Completion);
                        write.Completion = 0;
                    }

                    _buffers.Return(write.Buffer, write.Length);
                }

                _pending.Clear();
                _bytes = 0;
                _buffers.Clear();
            }
        }
    }

    private void RecoverIfStalled()
    {
        int seen;
        lock (_lock)
        {
            if (_stalled is null)
            {
                return;
            }

            seen = _recoveries;
        }

        if (!TryRecover(seen))
        {
            throw StalledError(CurrentStall());
        }
    }

    /// <summary>
    /// After a stall: lets every write still in flight complete or time out, then writes again, in
    /// start order, every write that timed out and every later one that overlaps it (RADOS keeps
    /// start order per object, so the newest data lands last). False when the cluster is still away
    /// (a write could not be started) or when another thread tried since <paramref name="seen"/> and
    /// the store is still stalled: callers then fail at once instead of each waiting a timeout.
    /// </summary>
    private bool TryRecover(int seen)
    {
        lock (_reap)
        {
            PendingWrite[] writes;
            lock (_lock)
            {
                if (_stalled is null)
                {
                    return _firstFailure is null;
                }

                if (_recoveries != seen)
                {
                    return false;
                }

                _recoveries++;
                writes = [.. _pending];
            }

            // No new write starts while stalled, so this is every write that can still land. After
            // its timeout librados never sends an operation again, so nothing written below can be
            // overtaken by an original.
            foreach (var write in writes)
            {
                if (write.Completion != 0)
                {
                    Settle(write, Wait(write));
                }
            }

            lock (_lock)
            {
                if (_firstFailure is not null)
                {
                    return false;
                }

                var failed = new List<PendingWrite>();
                foreach (var write in writes)
                {
                    var redo = write.State == WriteState.Failed
                        || failed.Exists(f => f.Offset < write.Offset + write.Length && write.Offset < f.Offset + f.Length);
                    if (write.State == WriteState.Failed)
                    {
                        failed.Add(write);
                    }

                    if (redo)
                    {
                        var rc = Submit(write);
                        if (rc < 0)
                        {
                            write.State = WriteState.Failed;
                            return false;
                        }
                    }
                }

                _stalled = null;
                return true;
            }
        }
    }

    /// <summary>
    /// Takes off the queue, without waiting, the oldest writes RADOS already answered: otherwise only
    /// a writer at the bound or a flush reaps them, and a reader after a burst of writes would look
    /// through up to <see cref="MaxWrites"/> finished ones. Skipped while another thread reaps (it may
    /// be waiting for RADOS, and a reader must not wait for writes that do not overlap it).
    /// </summary>
    private void ReapAnswered()
    {
        if (!_reap.TryEnter())
        {
            return;
        }

        try
        {
            while (true)
            {
                lock (_lock)
                {
                    if (_stalled is not null || !_pending.TryPeek(out var head) || head.Completion == 0 || RadosNative.AioIsComplete(head.Completion) == 0)
                    {
                        return;
                    }
                }

                // Answered, and no other thread can reap it meanwhile (this one holds _reap): no wait.
                if (ReapOldest(out _) != Reaped.One)
                {
                    return;
                }
            }
        }
        finally
        {
            _reap.Exit();
        }
    }

    /// <summary>Waits for the oldest write and frees its copy; a timeout stalls the queue and keeps it.</summary>
    private unsafe Reaped ReapOldest(out int recoveries)
    {
        lock (_reap)
        {
            PendingWrite write;
            lock (_lock)
            {
                recoveries = _recoveries;
                if (_stalled is not null)
                {
                    return Reaped.Stalled;
                }

                if (!_pending.TryPeek(out write!))
                {
                    return Reaped.Empty;
                }
            }

            if (write.Completion != 0)
            {
                Settle(write, Wait(write));
            }

            lock (_lock)
            {
                if (write.State == WriteState.Failed)
                {
                    recoveries = _recoveries;
                    return Reaped.Stalled;
                }

                _pending.Dequeue();
                _bytes -= write.Length;
            }

            _buffers.Return(write.Buffer, write.Length);
            return Reaped.One;
        }
    }

    /// <summary>Starts (or starts again) a write's aio; the caller holds <see cref="_lock"/>.</summary>
    private int Submit(PendingWrite write)
    {
        var rc = RadosNative.AioCreateCompletion(0, 0, 0, out var completion);
        if (rc < 0)
        {
            return rc;
        }

        rc = RadosNative.AioWrite(_io, write.Oid, completion, write.Buffer, (nuint)write.Length, (ulong)write.InObject);
        if (rc < 0)
        {
            RadosNative.AioRelease(completion);
            return rc;
        }

        write.Completion = completion;
        write.State = WriteState.InFlight;
        return rc;
    }

    private static int Wait(PendingWrite write)
    {
        var rc = RadosNative.AioWaitForComplete(write.Completion);
        if (rc >= 0)
        {
            rc = RadosNative.AioGetReturnValue(write.Completion);
        }

        RadosNative.AioRelease(write.Completion);
        write.Completion = 0;
        return rc;
    }

    /// <summary>Records how a write ended: done, held for a retry (timeout), or failed for good (its data is lost).</summary>
    private void Settle(PendingWrite write, int rc)
    {
        lock (_lock)
        {
            if (rc >= 0)
            {
                write.State = WriteState.Done;
            }
            else if (rc == -RadosNative.Etimedout)
            {
                write.State = WriteState.Failed;
                _stalled ??= _failure(rc, $"write of {write.Length} bytes at {write.Offset} to {write.Oid}");
            }
            else
            {
                write.State = WriteState.Done;
                _firstFailure ??= _failure(rc, $"write of {write.Length} bytes at {write.Offset} to {write.Oid}");
            }
        }
    }

    private StorageException CurrentStall()
    {
        lock (_lock)
        {
            return _stalled ?? _firstFailure ?? new StorageException(StorageError.IoError, "the Ceph cluster did not answer");
        }
    }

    private static StorageException StalledError(StorageException cause) =>
        new(cause.Error, $"{cause.Message}; the writes not yet in the cluster are held and written again once it answers", cause);

    private sealed class PendingWrite(nint buffer, int length, string oid, long inObject, long offset)
    {
        public nint Buffer { get; } = buffer;

        public int Length { get; } = length;

        public string Oid { get; } = oid;

        public long InObject { get; } = inObject;

        public long Offset { get; } = offset;

        public long Sequence { get; set; }

        public nint Completion { get; set; }

        public WriteState State { get; set; }
    }
}
