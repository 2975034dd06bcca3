using System.Buffers;
using System.Diagnostics;
using Microsoft.Win32.SafeHandles;

namespace Tidemark.Server;

// Handing a staged payload over (IPayloadSource.HandOver): a source whose bytes are all off the
// socket (in the pipe, and at most a small head still in the receive buffer) no longer depends on the
// connection's input, so it can be written on another thread while this one reads the next request.
// The handed-over source takes the pipe with it (and a copy of the head), and the connection goes on
// with a second pipe: at most two per connection, so at most two payloads are staged at once and the
// pipe pages a connection holds are bounded (both count against the user's pipe pages, as the first
// did). When the second pipe cannot be had (no descriptors, or the user is over pipe-user-pages-soft
// and gets a pipe too small to be worth it) nothing is handed over: the payload is written on the
// connection thread, as before. When both pipes are out, the next payload waits for the first to come
// back (within the payload deadline): the holder never waits on the connection, so that wait ends.
// A handed-over source gives its pipe back when disposed; one with bytes left in it (a write that
// failed part-way, or a dropped one) is closed instead, and the connection makes a new one when it
// needs it. After the connection completed, returned pipes are closed.
internal sealed partial class SocketInput
{
    /// <summary>The most a handed-over source takes out of the receive buffer (a copy): the head a short read left there, not a buffer's worth.</summary>
    private const int MaxHandedOverHeadBytes = 2 * AfterSourceReceiveBytes;

    private const int MaxPipes = 2;

    private readonly object _pipesLock = new();
    private SplicePipe? _returnedPipe;
    private int _pipesHandedOver;
    private bool _secondPipeUnavailable;
    private bool _pipesClosed;
    private long _handedOver;

    /// <summary>Payload sources handed over so far (for tests and diagnostics).</summary>
    public long SourcesHandedOver => Interlocked.Read(ref _handedOver);

    /// <summary>Pipes handed-over sources hold now (for tests).</summary>
    public int PipesHandedOver
    {
        get
        {
            lock (_pipesLock)
            {
                return _pipesHandedOver;
            }
        }
    }

    IDetachedPayloadSource? IPayloadSource.HandOver()
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if (_pipe is not { } pipe || _sourceInSocket > 0 || _sourceInPipe == 0 || _sourceBuffered > MaxHandedOverHeadBytes || !SecondPipeReady())
        {
            return null;
        }

        byte[]? head = null;
        var headBytes = _sourceBuffered;
        if (headBytes > 0)
        {
            head = ArrayPool<byte>.Shared.Rent(headBytes);
            _buffer.AsSpan(_start, headBytes).CopyTo(head);
            Consume(headBytes);
            _sourceBuffered = 0;
        }

        var source = new HandedOverSource(this, pipe, _sourceInPipe, head, headBytes);
        _pipe = null;
        _sourceInPipe = 0;
        Interlocked.Increment(ref _handedOver);
        return source;
    }

    /// <summary>
    /// True when the connection has a pipe to go on with once this one is handed over (made now if
    /// need be), and counts this one as handed over; false when no second pipe can be had.
    /// </summary>
    private bool SecondPipeReady()
    {
        lock (_pipesLock)
        {
            if (_pipesHandedOver == 0 && _returnedPipe is null)
            {
                if (_secondPipeUnavailable)
                {
                    return false;
                }

                try
                {
                    var second = SplicePipe.Create(PipeBytes);
                    if (second.CapacityBytes < MinPipeBytes)
                    {
                        second.Dispose();
                        _secondPipeUnavailable = true;
                        return false;
                    }

                    _returnedPipe = second;
                }
                catch (IOException)
                {
                    _secondPipeUnavailable = true;
                    return false;
                }
            }

            _pipesHandedOver++;
            return true;
        }
    }

    /// <summary>
    /// A pipe given back by a handed-over source, or null when the connection may make one; waits
    /// (within the payload deadline) while both pipes are out.
    /// </summary>
    private SplicePipe? TakeReturnedPipe()
    {
        var deadline = PayloadTimeout > TimeSpan.Zero
            ? Stopwatch.GetTimestamp() + (long)(PayloadTimeout.TotalSeconds * Stopwatch.Frequency)
            : long.MaxValue;
        lock (_pipesLock)
        {
            while (_returnedPipe is null && _pipesHandedOver >= MaxPipes)
            {
                if (_cancelPending)
                {
                    throw new OperationCanceledException("the connection is closing");
                }

                var left = deadline - Stopwatch.GetTimestamp();
                if (left <= 0)
                {
                    throw new PayloadSourceException($"no staging pipe came back within the payload deadline ({PayloadTimeout.TotalSeconds:0.###} s)");
                }

                Monitor.Wait(_pipesLock, (int)Math.Clamp(left * 1000 / Stopwatch.Frequency, 1, 1000));
            }

            var pipe = _returnedPipe;
            _returnedPipe = null;
            return pipe;
        }
    }

    /// <summary>A handed-over source is done with <paramref name="pipe"/>: kept for the next payload when empty, else closed.</summary>
    private void ReturnPipe(SplicePipe pipe, bool empty)
    {
        var close = true;
        lock (_pipesLock)
        {
            _pipesHandedOver--;
            if (empty && !_pipesClosed && _returnedPipe is null)
            {
                _returnedPipe = pipe;
                close = false;
            }

            Monitor.PulseAll(_pipesLock);
        }

        if (close)
        {
            pipe.Dispose();
        }
    }

    /// <summary>The connection is over: a pipe given back is closed, and so is every one given back later.</summary>
    private void CloseSparePipe()
    {
        SplicePipe? spare;
        lock (_pipesLock)
        {
            _pipesClosed = true;
            spare = _returnedPipe;
            _returnedPipe = null;
            Monitor.PulseAll(_pipesLock);
        }

        spare?.Dispose();
    }

    /// <summary>
    /// A payload all staged, taken away from the connection: a head copied out of the receive buffer,
    /// then the pipe. Used by one thread at a time (the one that writes it), like any source.
    /// </summary>
    private sealed class HandedOverSource(SocketInput owner, SplicePipe pipe, int inPipe, byte[]? head, int headBytes) : IDetachedPayloadSource
    {
        private int _headStart;
        private int _headLeft = headBytes;
        private int _inPipe = inPipe;
        private bool _dropped;
        private bool _disposed;

        public int RemainingBytes => _headLeft + _inPipe;

        public void Fill(Span<byte> destination)
        {
            Check(destination.Length);
            var fromHead = Math.Min(_headLeft, destination.Length);
            if (fromHead > 0)
            {
                head.AsSpan(_headStart, fromHead).CopyTo(destination);
                _headStart += fromHead;
                _headLeft -= fromHead;
                destination = destination[fromHead..];
            }

            if (!destination.IsEmpty)
            {
                pipe.Read(destination);
                _inPipe -= destination.Length;
            }
        }

        public void FillFile(SafeFileHandle file, long fileOffset, int lengthBytes)
        {
            Check(lengthBytes);
            var done = 0;
            while (done < lengthBytes)
            {
                if (_headLeft > 0)
                {
                    // As the connection's own source does: the head's whole pages from memory, its last
                    // part page completed with the bytes behind it, so the splice starts on a page.
                    var n = Math.Min(_headLeft, lengthBytes - done) & ~(PageBytes - 1);
                    if (n > 0)
                    {
                        RandomAccess.Write(file, head.AsSpan(_headStart, n), fileOffset + done);
                        _headStart += n;
                        _headLeft -= n;
                    }
                    else
                    {
                        n = Math.Min(PageBytes, lengthBytes - done);
                        WriteThroughMemory(this, file, fileOffset + done, n);
                    }

                    done += n;
                    continue;
                }

                var take = lengthBytes - done;
                var moved = owner._spliceUnavailable ? 0 : pipe.SpliceOut(file, fileOffset + done, take);
                if (moved == 0)
                {
                    // This file takes no splice (EINVAL): through memory, and later payloads too.
                    owner._spliceUnavailable = true;
                    CopyOut(file, fileOffset + done, take);
                    moved = take;
                }
                else
                {
                    _inPipe -= moved;
                }

                done += moved;
            }
        }

        /// <summary>Drops what is left: the pipe is closed rather than read empty (Dispose).</summary>
        public void Skip()
        {
            _dropped |= _inPipe > 0;
            _headLeft = 0;
            _inPipe = 0;
        }

        public void Dispose()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            if (head is not null)
            {
                ArrayPool<byte>.Shared.Return(head);
            }

            owner.ReturnPipe(pipe, empty: !_dropped && _inPipe == 0);
        }

        private void Check(int lengthBytes)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (lengthBytes < 0 || lengthBytes > RemainingBytes)
            {
                throw new ArgumentOutOfRangeException(nameof(lengthBytes), $"asked for {lengthBytes} bytes of a payload that has {RemainingBytes} left");
            }
        }

        private void CopyOut(SafeFileHandle file, long fileOffset, int lengthBytes)
        {
            var buffer = ArrayPool<byte>.Shared.Rent(lengthBytes);
            try
            {
                pipe.Read(buffer.AsSpan(0, lengthBytes));
                _inPipe -= lengthBytes;
                RandomAccess.Write(file, buffer.AsSpan(0, lengthBytes), fileOffset);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }
}
