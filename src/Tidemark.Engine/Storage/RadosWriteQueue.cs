using System.Runtime.InteropServices;

namespace Tidemark.Engine.Storage;

/// <summary>
/// The writes of a RADOS store that are in flight (ADR 0017): each started as librados aio on a copy
/// of the data and kept in start order until its completion is reaped. Bounded in count and bytes;
/// a writer past either bound waits for the oldest. Waiting never holds the lock that starting a
/// write needs, so a flush (or a reader waiting for an overlapping write) does not stall writers that
/// start meanwhile: the RADOS pipeline stays full while a commit waits for its data.
/// </summary>
internal sealed class RadosWriteQueue
{
    /// <summary>Writes in flight at once, at most (RBD's default queue is 128 ops; 64 keeps a 2-core OSD busy).</summary>
    public const int MaxWrites = 64;

    /// <summary>Bytes of copied write data in flight at once, at most.</summary>
    public const long MaxBytes = 64L << 20;

    private readonly nint _io;
    private readonly Func<int, string, StorageException> _failure;

    // Guards the queue, the counters and the first failure; held only to start a write or to take
    // the head off the queue, never while waiting for RADOS.
    private readonly Lock _lock = new();

    // One thread at a time waits for the head's completion and releases it, so a completion is
    // waited for and released exactly once, in start order.
    private readonly Lock _reap = new();
    private readonly Queue<PendingWrite> _pending = new();
    private long _bytes;
    private long _started;
    private StorageException? _firstFailure;

    public RadosWriteQueue(nint io, Func<int, string, StorageException> failure)
    {
        _io = io;
        _failure = failure;
    }

    /// <summary>The first write that failed, if any: its data is lost, so no later flush may succeed.</summary>
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

    /// <summary>Writes in flight now (for tests and metrics).</summary>
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

    /// <summary>Starts one write inside one object, then waits for the oldest while the queue is past its bounds.</summary>
    public unsafe void Start(string oid, long inObject, ReadOnlySpan<byte> data, long storeOffset)
    {
        var buffer = (nint)NativeMemory.Alloc((nuint)data.Length);
        data.CopyTo(new Span<byte>((void*)buffer, data.Length));
        var rc = RadosNative.AioCreateCompletion(0, 0, 0, out var completion);
        if (rc < 0)
        {
            NativeMemory.Free((void*)buffer);
            throw _failure(rc, $"starting a write of {data.Length} bytes at {storeOffset} to {oid}");
        }

        bool over;
        lock (_lock)
        {
            // Started under the lock, so start order (which RADOS keeps per object) is queue order.
            rc = RadosNative.AioWrite(_io, oid, completion, buffer, (nuint)data.Length, (ulong)inObject);
            if (rc < 0)
            {
                RadosNative.AioRelease(completion);
                NativeMemory.Free((void*)buffer);
                throw _failure(rc, $"write of {data.Length} bytes at {storeOffset} to {oid}");
            }

            _pending.Enqueue(new PendingWrite(completion, buffer, data.Length, oid, storeOffset, ++_started));
            _bytes += data.Length;
            over = _pending.Count > MaxWrites || _bytes > MaxBytes;
        }

        while (over && ReapOldest())
        {
            lock (_lock)
            {
                over = _pending.Count > MaxWrites || _bytes > MaxBytes;
            }
        }
    }

    /// <summary>Waits for every write started before this call (not for those started meanwhile).</summary>
    public void WaitForStarted()
    {
        long upTo;
        lock (_lock)
        {
            upTo = _started;
        }

        while (true)
        {
            lock (_lock)
            {
                if (!_pending.TryPeek(out var head) || head.Sequence > upTo)
                {
                    return;
                }
            }

            ReapOldest();
        }
    }

    /// <summary>
    /// Waits until no write in flight overlaps [offset, offset+length): a read then sees every write
    /// started before it, without resting on RADOS's per-object ordering of reads after writes.
    /// </summary>
    public void WaitForOverlapping(long storeOffset, long length)
    {
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

                ReapOldest();
            }
        }
    }

    /// <summary>Waits for the oldest write, frees its copy and keeps the first failure. False when none was in flight.</summary>
    private unsafe bool ReapOldest()
    {
        lock (_reap)
        {
            PendingWrite write;
            lock (_lock)
            {
                if (!_pending.TryPeek(out write!))
                {
                    return false;
                }
            }

            var rc = RadosNative.AioWaitForComplete(write.Completion);
            if (rc >= 0)
            {
                rc = RadosNative.AioGetReturnValue(write.Completion);
            }

            RadosNative.AioRelease(write.Completion);
            NativeMemory.Free((void*)write.Buffer);
            lock (_lock)
            {
                _pending.Dequeue();
                _bytes -= write.Length;
                if (rc < 0)
                {
                    _firstFailure ??= _failure(rc, $"write of {write.Length} bytes at {write.Offset} to {write.Oid}");
                }
            }

            return true;
        }
    }

    private sealed record PendingWrite(nint Completion, nint Buffer, int Length, string Oid, long Offset, long Sequence);
}
