using System.Buffers;
using System.Runtime.ExceptionServices;

namespace Tidemark.Server.Api;

/// <summary>
/// A bounded ring of bytes between one synchronous side, on a dedicated thread, and one
/// asynchronous side (an HTTP body's copy loop). The synchronous side waits on the ring's monitor:
/// it is a thread that exists to wait there. The asynchronous side awaits a completion that the
/// synchronous side signals when the condition it waits for holds. Neither waits on a
/// <see cref="Task"/> synchronously (issue 18: no sync-over-async), and at most
/// <see cref="Capacity"/> bytes sit here whatever the body's length.
/// </summary>
/// <remarks>
/// One direction per instance: either the asynchronous side fills and the synchronous side reads
/// (a request body), or the synchronous side writes and the asynchronous side drains (a response
/// body). The asynchronous side reads or writes the ring's memory in place, outside the lock: the
/// region it was given is one the other side does not touch until <see cref="Commit"/> or
/// <see cref="Consume"/> hands it over. <see cref="Dispose"/> returns the ring to the pool and must
/// run only once both sides have stopped.
/// </remarks>
internal sealed class BodyHandoff : IDisposable
{
    private readonly object _gate = new();
    private readonly int _capacity;
    private readonly int _signalBytes;
    private readonly byte[] _ring;
    private bool _returned;
    private int _head;
    private int _filled;
    private bool _writerDone;
    private Exception? _writerError;
    private bool _readerDone;
    private bool _flushWanted;
    private bool _syncWaiting;
    private TaskCompletionSource? _asyncWaiter;

    /// <param name="capacity">Bytes the ring holds; the bound on what is buffered.</param>
    /// <param name="signalBytes">Buffered bytes at which a waiting asynchronous reader is woken without a flush (small writes gather until then).</param>
    public BodyHandoff(int capacity, int signalBytes)
    {
        _capacity = capacity;
        _signalBytes = Math.Min(signalBytes, capacity);
        _ring = ArrayPool<byte>.Shared.Rent(capacity);
    }

    public int Capacity => _capacity;

    private int Free => _capacity - _filled;

    private int Tail => (_head + _filled) % _capacity;

    // ---- the asynchronous side fills, the synchronous side reads (a request body) ----

    /// <summary>
    /// Waits for room to fill, then returns the contiguous free region (at most <paramref name="max"/>
    /// bytes) to read into; empty once the reader stopped (finished, or refused the stream). A full
    /// ring is refilled only once half of it was read, so the two sides do not wake each other per read.
    /// </summary>
    public async ValueTask<Memory<byte>> WaitForRoomAsync(int max, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_readerDone)
                {
                    return Memory<byte>.Empty;
                }

                if (Free > 0)
                {
                    var tail = Tail;
                    return _ring.AsMemory(tail, Math.Min(max, Math.Min(Free, _capacity - tail)));
                }

                wait = Park();
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Hands <paramref name="count"/> bytes read into the region from <see cref="WaitForRoomAsync"/> to the reader.</summary>
    public void Commit(int count)
    {
        lock (_gate)
        {
            _filled += count;
            WakeSync();
        }
    }

    /// <summary>
    /// The synchronous reader: copies what is buffered (waiting until something is, or the writer
    /// ended). 0 at the end; the writer's failure is thrown once what it delivered was read.
    /// </summary>
    public int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        lock (_gate)
        {
            while (_filled == 0 && !_writerDone)
            {
                WaitSync();
            }

            if (_filled == 0)
            {
                if (_writerError is { } error)
                {
                    ExceptionDispatchInfo.Throw(error);
                }

                return 0;
            }

            var taken = Math.Min(buffer.Length, Math.Min(_filled, _capacity - _head));
            _ring.AsSpan(_head, taken).CopyTo(buffer);
            _head = (_head + taken) % _capacity;
            _filled -= taken;
            if (Free >= _capacity / 2)
            {
                WakeAsync();
            }

            return taken;
        }
    }

    // ---- the synchronous side writes, the asynchronous side drains (a response body) ----

    /// <summary>
    /// The synchronous writer: copies <paramref name="data"/> in, waiting for room while the ring is
    /// full. Throws once the reader stopped (the client went away), so the writer stops instead of
    /// producing into nothing.
    /// </summary>
    public void Write(ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            while (!data.IsEmpty)
            {
                while (Free == 0 && !_readerDone)
                {
                    WaitSync();
                }

                ThrowIfReaderDone();
                var tail = Tail;
                var n = Math.Min(data.Length, Math.Min(Free, _capacity - tail));
                data[..n].CopyTo(_ring.AsSpan(tail, n));
                data = data[n..];
                _filled += n;
                if (_filled >= _signalBytes)
                {
                    WakeAsync();
                }
            }
        }
    }

    /// <summary>The synchronous writer: what it wrote so far is drained without waiting for more.</summary>
    public void Flush()
    {
        lock (_gate)
        {
            ThrowIfReaderDone();
            if (_filled > 0)
            {
                _flushWanted = true;
                WakeAsync();
            }
        }
    }

    /// <summary>
    /// The asynchronous reader: waits until a segment's worth is buffered (or a flush or the end asks
    /// for less) and returns the contiguous buffered region; empty at the end. The writer's failure
    /// is thrown as soon as it is seen.
    /// </summary>
    public async ValueTask<ReadOnlyMemory<byte>> WaitForDataAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_writerError is { } error)
                {
                    ExceptionDispatchInfo.Throw(error);
                }

                if (_filled >= _signalBytes || (_filled > 0 && (_flushWanted || _writerDone)))
                {
                    return _ring.AsMemory(_head, Math.Min(_filled, _capacity - _head));
                }

                if (_writerDone)
                {
                    return ReadOnlyMemory<byte>.Empty;
                }

                wait = Park();
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Gives back <paramref name="count"/> bytes of the region from <see cref="WaitForDataAsync"/>, now sent.</summary>
    public void Consume(int count)
    {
        lock (_gate)
        {
            _head = (_head + count) % _capacity;
            _filled -= count;
            if (_filled == 0)
            {
                _flushWanted = false;
            }

            WakeSync();
        }
    }

    // ---- both directions ----

    /// <summary>The writing side is done: <paramref name="error"/> null at a clean end, else why it stopped.</summary>
    public void CompleteWriter(Exception? error = null)
    {
        lock (_gate)
        {
            _writerDone = true;
            _writerError ??= error;
            WakeSync();
            WakeAsync();
        }
    }

    /// <summary>The reading side is done (finished, refused, or its client went away); the writer stops at its next step.</summary>
    public void CompleteReader()
    {
        lock (_gate)
        {
            _readerDone = true;
            WakeSync();
            WakeAsync();
        }
    }

    /// <summary>Returns the ring to the pool; only once neither side touches it any more.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_returned)
            {
                return;
            }

            _returned = true;
        }

        ArrayPool<byte>.Shared.Return(_ring);
    }

    private void ThrowIfReaderDone()
    {
        if (_readerDone)
        {
            throw new IOException("the client stopped reading the response");
        }
    }

    // Callers hold _gate. Continuations run asynchronously, never inside this lock.
    private Task Park()
    {
        _asyncWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return _asyncWaiter.Task;
    }

    private void WakeAsync()
    {
        _asyncWaiter?.TrySetResult();
        _asyncWaiter = null;
    }

    private void WaitSync()
    {
        _syncWaiting = true;
        Monitor.Wait(_gate);
        _syncWaiting = false;
    }

    private void WakeSync()
    {
        if (_syncWaiting)
        {
            Monitor.PulseAll(_gate);
        }
    }
}
