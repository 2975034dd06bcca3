using System.Buffers;
using System.Diagnostics;
using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;

namespace Tidemark.Server;

// The payload source (IPayloadSource): a WRITE's payload pulled by the device that writes it. The
// bytes come in the input's order: what the receive buffer already holds is written into the
// connection's pipe when the source is opened, the socket's next bytes are spliced in behind them, and
// the device takes them out of the pipe (what the pipe could not hold is spliced in as the device asks).
// So each payload reaches the store as one run of splices, whole pages from its start: the page cache
// makes its folios from whole writes, not from a page or two written apart (docs/BENCHMARKS.md,
// session 24). It keeps the no-read-ahead rule of the class: the pipe takes at most the payload's own
// bytes, and the protocol reads again only once the source was consumed or skipped.
//
// A device holds the volume's region locks while it pulls (Volume.WriteFrom), so a peer that trickles
// its payload would hold them. So a source is at most one pipe's worth (1 MiB; a larger WRITE takes
// one source per piece) and is staged into the pipe when it is opened, before it is handed to the
// device: while the bytes trickle in, no lock is held. Only a pipe that fills by the socket's pieces
// before its byte capacity leaves part of a source in the socket, and every wait for the socket is
// bounded by the payload's deadline (PayloadTimeout, from when the source was opened); past it the
// source fails and the connection ends.
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The pipe is closed by Complete, the reader's end of life, which the listener always calls when the connection ends.")]
internal sealed partial class SocketInput : IPayloadSource
{
    /// <summary>What a connection's pipe asks the kernel for: a 1 MiB WRITE fits whole (pipe-max-size's default).</summary>
    private const int PipeBytes = 1 << 20;

    /// <summary>A smaller pipe (the kernel's answer past pipe-user-pages-soft) is not used.</summary>
    private const int MinPipeBytes = 256 * 1024;

    /// <summary>
    /// The first read after a source was opened takes at most this much: the next request's header,
    /// and no more of a payload that may follow it than a small WRITE's (see ShortenAfterSource).
    /// </summary>
    private const int AfterSourceReceiveBytes = 8 * 1024;

    private SplicePipe? _pipe;
    private bool _shortReceive;
    private int _sourceInPipe;
    private int _sourceInSocket;
    private long _sourceDeadline;
    private bool _spliceUnavailable;
    private long _payloadSleeps;

    /// <summary>
    /// How long a payload taken through the source may take to arrive, from when the source is opened
    /// (zero: no deadline); see the notes above. Past it the connection ends.
    /// </summary>
    public TimeSpan PayloadTimeout { get; init; } = ConnectionLimits.DefaultPayloadTimeout;

    /// <summary>How many times a payload's wait went to sleep in poll(2) after the receive poll found nothing (for tests and diagnostics).</summary>
    public long PayloadSleeps => _payloadSleeps;

    /// <summary>Bytes of the open payload source not yet delivered.</summary>
    public int RemainingBytes => _sourceInPipe + _sourceInSocket;

    bool IPayloadFeature.OffersSource => !_completed && Negotiation is null && !_spliceUnavailable && SplicePipe.IsSupported;

    IPayloadSource? IPayloadFeature.OpenSource(int lengthBytes)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(lengthBytes);
        ThrowIfSourceOpen();
        if (Negotiation is not null || _spliceUnavailable || !SplicePipe.IsSupported)
        {
            return null;
        }

        if (_pipe is null)
        {
            try
            {
                _pipe = SplicePipe.Create(PipeBytes);
            }
            catch (IOException)
            {
                // No descriptors left (EMFILE) or no pipe to size: this payload goes through memory.
                return null;
            }

            if (_pipe.CapacityBytes < MinPipeBytes)
            {
                // The user is over pipe-user-pages-soft (many connections): pieces this small would
                // cost more system calls than the copy saves.
                _spliceUnavailable = true;
                ClosePipe();
                return null;
            }
        }

        // At most what the pipe holds: each source is staged whole before a device takes a lock.
        var sourceBytes = Math.Min(lengthBytes, _pipe.CapacityBytes);
        var buffered = Math.Min(_end - _start, sourceBytes);
        if (buffered > 0)
        {
            // What the receive buffer holds goes first, so the pipe holds the payload in order (the
            // pipe is empty and this is at most its capacity: the write does not block).
            _pipe.Write(_buffer.AsSpan(_start, buffered));
            Consume(buffered);
        }

        _sourceInPipe = buffered;
        _sourceInSocket = sourceBytes - buffered;
        _sourceDeadline = PayloadTimeout > TimeSpan.Zero
            ? Stopwatch.GetTimestamp() + (long)(PayloadTimeout.TotalSeconds * Stopwatch.Frequency)
            : long.MaxValue;

        // Before any lock is taken: the rest into the pipe, until it is all there or the pipe is full
        // (see the notes above).
        var staging = true;
        while (staging && _sourceInSocket > 0)
        {
            staging = SpliceIn(_pipe.CapacityBytes - _sourceInPipe);
        }

        _shortReceive = true;
        return this;
    }

    /// <summary>
    /// Right after a payload went through a source, the input is likely a stream of large WRITEs
    /// (fio, nbdcopy, a restore): a full-size read for the next header would take up to the whole
    /// receive buffer of the next payload into memory (copied twice, as before the source: 256 KiB of
    /// each 1 MiB WRITE at queue depth 32). So that read takes a header's worth, and the next payload
    /// stays in the socket for the source; reads after it are full-size again.
    /// </summary>
    private Memory<byte> ShortenAfterSource(Memory<byte> space)
    {
        if (!_shortReceive)
        {
            return space;
        }

        _shortReceive = false;
        return space[..Math.Min(space.Length, AfterSourceReceiveBytes)];
    }

    void IPayloadSource.Fill(Span<byte> destination)
    {
        CheckTake(destination.Length);
        while (!destination.IsEmpty)
        {
            int n;
            if (_sourceInPipe > 0)
            {
                n = Math.Min(_sourceInPipe, destination.Length);
                _pipe!.Read(destination[..n]);
                _sourceInPipe -= n;
            }
            else
            {
                WaitForPayload();
                n = ReceiveForSource(destination[..Math.Min(destination.Length, _sourceInSocket)]);
                _sourceInSocket -= n;
            }

            destination = destination[n..];
        }
    }

    void IPayloadSource.FillFile(SafeFileHandle file, long fileOffset, int lengthBytes)
    {
        CheckTake(lengthBytes);
        var done = 0;
        while (done < lengthBytes)
        {
            if (_sourceInPipe == 0)
            {
                // Waits until some of it arrived: an empty pipe always takes something.
                _ = SpliceIn(_pipe!.CapacityBytes);
            }

            var take = Math.Min(_sourceInPipe, lengthBytes - done);
            var moved = _pipe!.SpliceOut(file, fileOffset + done, take);
            if (moved == 0)
            {
                // This file takes no splice (EINVAL): this piece through memory, later payloads too.
                _spliceUnavailable = true;
                _sourceInPipe -= take; // CopyOut takes them out of the pipe before it writes: a failed write leaves nothing to skip
                _pipe.CopyOut(file, fileOffset + done, take);
                moved = take;
            }
            else
            {
                _sourceInPipe -= moved;
            }

            done += moved;
        }
    }

    void IPayloadSource.Skip()
    {
        if (RemainingBytes == 0)
        {
            return;
        }

        var scratch = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            while (RemainingBytes > 0)
            {
                ((IPayloadSource)this).Fill(scratch.AsSpan(0, Math.Min(scratch.Length, RemainingBytes)));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>A read or payload receive while a source still has bytes would take them out of order.</summary>
    private void ThrowIfSourceOpen()
    {
        if (RemainingBytes != 0)
        {
            throw new InvalidOperationException($"a payload source still has {RemainingBytes} bytes to deliver or skip");
        }
    }

    private void CheckTake(int lengthBytes)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        if (lengthBytes < 0 || lengthBytes > RemainingBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(lengthBytes), $"asked for {lengthBytes} bytes of a payload that has {RemainingBytes} left");
        }
    }

    /// <summary>Consumes bytes at the front of the receive buffer (payload bytes the source delivered).</summary>
    private void Consume(int bytes)
    {
        _start += bytes;
        _examined = Math.Max(_examined, _start);
        if (_start == _end)
        {
            _start = _end = _examined = 0;
        }
    }

    /// <summary>
    /// Waits (within the payload's deadline) until the socket is readable, then splices what it has of
    /// the payload, up to <paramref name="maxBytes"/>, into the pipe. False when the pipe is full.
    /// </summary>
    private bool SpliceIn(int maxBytes)
    {
        var want = Math.Min(maxBytes, _sourceInSocket);
        if (want <= 0)
        {
            return false;
        }

        while (true)
        {
            WaitForPayload();
            var moved = _pipe!.TrySpliceIn(ConnectionSocket.SafeHandle, want);
            if (moved > 0)
            {
                _sourceInPipe += moved;
                _sourceInSocket -= moved;
                return true;
            }

            if (moved == 0)
            {
                throw EndOfPayload();
            }

            if (_sourceInPipe > 0)
            {
                return false; // full: it is emptied into the file first
            }

            // Would block with the pipe empty: readable was an edge the splice did not see; wait again.
        }
    }

    /// <summary>Waits until the socket is readable (data, end of stream, an error, or a shutdown), within the payload's deadline.</summary>
    private void WaitForPayload()
    {
        while (true)
        {
            if (_cancelPending)
            {
                throw new OperationCanceledException("the connection is closing");
            }

            var left = _sourceDeadline - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                throw new PayloadSourceException($"the peer did not send its {RemainingBytes}-byte payload within the payload deadline ({PayloadTimeout.TotalSeconds:0.###} s)");
            }

            // poll(2) takes milliseconds; wait at most a second at a time so the deadline is rechecked.
            var waitMicroseconds = _sourceDeadline == long.MaxValue ? 1_000_000 : (int)Math.Clamp(left * 1_000_000 / Stopwatch.Frequency, 1_000, 1_000_000);
            try
            {
                // The receive poll first, as for a header: a payload that arrives piece by piece (a
                // 256 KiB Data-Out segment on loopback) would otherwise put this thread to sleep once
                // per piece, and the peer's next send would pay for waking it.
                if (PollForBytes())
                {
                    return;
                }

                _payloadSleeps++;
                if (ConnectionSocket.Poll(waitMicroseconds, SelectMode.SelectRead))
                {
                    return;
                }
            }
            catch (SocketException ex)
            {
                throw new PayloadSourceException($"the connection failed in the middle of a payload: {ex.Message}", ex);
            }
            catch (ObjectDisposedException ex)
            {
                throw new PayloadSourceException("the connection closed in the middle of a payload", ex);
            }
        }
    }

    private int ReceiveForSource(Span<byte> destination)
    {
        int received;
        try
        {
            received = ConnectionSocket.Receive(destination, SocketFlags.None);
        }
        catch (SocketException ex)
        {
            throw new PayloadSourceException($"the connection failed in the middle of a payload: {ex.Message}", ex);
        }
        catch (ObjectDisposedException)
        {
            received = 0;
        }

        return received > 0 ? received : throw EndOfPayload();
    }

    private Exception EndOfPayload()
    {
        if (_cancelPending)
        {
            return new OperationCanceledException("the connection is closing");
        }

        _endOfStream = true;
        return new PayloadSourceException("the peer closed in the middle of a payload", new EndOfStreamException());
    }

    private void ClosePipe()
    {
        _pipe?.Dispose();
        _pipe = null;
        _sourceInPipe = _sourceInSocket = 0;
    }
}
