using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Runtime.CompilerServices;

namespace Tidemark.Server;

/// <summary>
/// The input side of a connection's socket: the protocol's <see cref="PipeReader"/> and its
/// <see cref="IPayloadFeature"/>, in one class because both take bytes from the same socket and only
/// one place may decide which bytes go where.
/// </summary>
/// <remarks>
/// <para>
/// <b>No read-ahead.</b> The socket is read only inside <see cref="ReadAsync"/> (when the protocol
/// has examined everything buffered and asks for more) and inside <see cref="ReceiveAsync"/> (when it
/// asks for a payload). Nothing receives in the background, so the bytes buffered here are all the
/// bytes taken off the socket and not yet handed out: a payload is the buffered bytes first, then the
/// socket's next bytes, straight into the protocol's destination without a pass through this buffer.
/// Moving payloads any other way (splice, a second reader of the socket) would have to keep this
/// rule, and is only correct if done here; Kestrel's transport, which always receives ahead, could
/// not (docs/adr/0010-protocol-transport.md). The payload source (<see cref="IPayloadSource"/>,
/// SocketInput.PayloadSource.cs) is that: it splices a payload socket -> pipe -> store file, and
/// takes only the payload's own bytes.
/// </para>
/// <para>
/// Reads are blocking system calls that complete synchronously, so a connection that awaits them on
/// its own data-phase thread runs start to end on it: the kernel wakes the thread blocked in recv
/// (DESIGN.md, data-path performance). A read that finds no data first polls for
/// <c>poll</c> (no wake-up of a sleeping thread at queue depth 1; zero blocks at once), and so does a
/// payload source waiting for its next bytes (SocketInput.PayloadSource.cs). While the
/// connection negotiates, a read that would block waits on the shared poller instead
/// (<see cref="Negotiation"/>: no thread held). Cancelling a read (CancelPendingRead, the token, the
/// server stopping) shuts the socket's receive side down, which ends the connection.
/// </para>
/// <para>Used by one thread at a time (the connection's).</para>
/// </remarks>
internal sealed partial class SocketInput(Socket socket, TimeSpan poll, int bufferBytes) : PipeReader, IPayloadFeature
{
    private const int PositionMask = int.MaxValue;

    private long _pollTicks = (long)(poll.TotalSeconds * Stopwatch.Frequency);
    private byte[]? _buffer;
    private int _start;
    private int _end;
    private int _examined;
    private bool _endOfStream;
    private bool _completed;
    private volatile bool _cancelPending;

    /// <summary>Set while the connection negotiates; null in the data phase (see remarks).</summary>
    public SocketReadiness.Registration? Negotiation { get; set; }

    /// <summary>The connection's socket (for the payload source's splice and waits, SocketInput.PayloadSource.cs).</summary>
    private Socket ConnectionSocket => socket;

    /// <summary>How long a receive that finds no bytes spins before it sleeps; zero once stopped.</summary>
    public TimeSpan ReceivePoll => TimeSpan.FromSeconds((double)_pollTicks / Stopwatch.Frequency);

    /// <summary>Bytes received and not yet consumed by the protocol (what a payload starts with).</summary>
    public int BufferedBytes => _end - _start;

    public override bool TryRead(out ReadResult result)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        ThrowIfSourceOpen();
        if (_cancelPending || _end > _examined || _endOfStream)
        {
            result = Result();
            return true;
        }

        result = default;
        return false;
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (TryRead(out var buffered))
        {
            return ValueTask.FromResult(buffered);
        }

        cancellationToken.ThrowIfCancellationRequested();
        var space = ShortenAfterSource(SpaceToReceive());
        var pending = ReceiveAsync(space, cancellationToken);
        if (!pending.IsCompleted)
        {
            return AwaitReceivedAsync(pending);
        }

        Received(pending.Result);
        return ValueTask.FromResult(Result());
    }

    private async ValueTask<ReadResult> AwaitReceivedAsync(ValueTask<int> pending)
    {
        Received(await pending.ConfigureAwait(false));
        return Result();
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        var start = Index(consumed);
        var seen = Index(examined);
        if (start < _start || start > _end || seen < start || seen > _end)
        {
            throw new ArgumentOutOfRangeException(nameof(consumed), "advanced outside what the last read returned");
        }

        _start = start;
        _examined = seen;
        if (_start == _end)
        {
            // Everything consumed: the next receive starts at the front, without a copy.
            _start = _end = _examined = 0;
        }
    }

    public override void CancelPendingRead()
    {
        _cancelPending = true;
        ShutdownReceive();
    }

    public override void Complete(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }

        _completed = true;
        ClosePipe();
        if (_buffer is { } buffer)
        {
            _buffer = null;
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// The payload feature: the buffered bytes first, then straight from the socket into
    /// <paramref name="destination"/> (see remarks: no read-ahead).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    async ValueTask IPayloadFeature.ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        ThrowIfSourceOpen();
        var buffered = Math.Min(_end - _start, destination.Length);
        if (buffered > 0)
        {
            _buffer.AsSpan(_start, buffered).CopyTo(destination.Span);
            destination = destination[buffered..];
            _start += buffered;
            _examined = Math.Max(_examined, _start);
            if (_start == _end)
            {
                _start = _end = _examined = 0;
            }
        }

        while (!destination.IsEmpty)
        {
            var pending = ReceiveAsync(destination, cancellationToken);
            var received = pending.IsCompleted ? pending.Result : await pending.ConfigureAwait(false);
            if (received == 0)
            {
                if (_cancelPending)
                {
                    throw new OperationCanceledException("the connection is closing");
                }

                throw new EndOfStreamException("the peer closed in the middle of a payload");
            }

            destination = destination[received..];
        }
    }

    /// <summary>Ends a blocked read and every later one (the connection is closing).</summary>
    public void ShutdownReceive()
    {
        try
        {
            socket.Shutdown(SocketShutdown.Receive);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already closed or reset: reads end either way.
        }
    }

    private ReadResult Result()
    {
        var canceled = _cancelPending;
        _cancelPending = false;
        var buffer = _buffer is null ? default : new ReadOnlySequence<byte>(_buffer, _start, _end - _start);
        return new ReadResult(buffer, canceled, _endOfStream && !canceled);
    }

    private int Index(SequencePosition position)
    {
        if (position.GetObject() is not null && !ReferenceEquals(position.GetObject(), _buffer))
        {
            throw new InvalidOperationException("a position from a buffer this reader no longer holds");
        }

        return position.GetInteger() & PositionMask;
    }

    /// <summary>Room behind the buffered bytes, made by moving them to the front or growing the buffer.</summary>
    private Memory<byte> SpaceToReceive()
    {
        var buffer = _buffer ??= ArrayPool<byte>.Shared.Rent(bufferBytes);
        if (buffer.Length - _end >= bufferBytes / 4)
        {
            return buffer.AsMemory(_end);
        }

        var held = _end - _start;
        if (held > buffer.Length / 2)
        {
            // A message larger than the buffer (an iSCSI PDU with its data segment): the protocol
            // caps what it waits for, so growing to hold it is bounded by the protocol's limits.
            var grown = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
            buffer.AsSpan(_start, held).CopyTo(grown);
            ArrayPool<byte>.Shared.Return(buffer);
            _buffer = buffer = grown;
        }
        else
        {
            buffer.AsSpan(_start, held).CopyTo(buffer);
        }

        _examined -= _start;
        _start = 0;
        _end = held;
        return buffer.AsMemory(_end);
    }

    private void Received(int bytes)
    {
        if (bytes == 0)
        {
            _endOfStream = true;
            return;
        }

        _end += bytes;
    }

    /// <summary>One receive into <paramref name="destination"/>: 0 at end of stream (or when shut down).</summary>
    private ValueTask<int> ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        if (Negotiation is { } negotiation && Available() == 0)
        {
            return ReceiveWhenReadableAsync(negotiation, destination, cancellationToken);
        }

        using var registration = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static state => ((SocketInput)state!).ShutdownReceive(), this)
            : default;
        var received = Receive(destination.Span);
        if (received == 0 && cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        return ValueTask.FromResult(received);
    }

    private async ValueTask<int> ReceiveWhenReadableAsync(SocketReadiness.Registration negotiation, Memory<byte> destination, CancellationToken cancellationToken)
    {
        // Cancelling shuts the receive side down, which the poller reports as readable (end of stream).
        using (cancellationToken.UnsafeRegister(static state => ((SocketInput)state!).ShutdownReceive(), this))
        {
            await negotiation.WaitReadableAsync().ConfigureAwait(false);
        }

        cancellationToken.ThrowIfCancellationRequested();

        // Readable: data, end of stream or an error is there, so this does not block.
        return Receive(destination.Span);
    }

    /// <summary>From now on a receive that finds no bytes sleeps at once (<see cref="IConnectionPhase.StopReceivePoll"/>).</summary>
    public void StopReceivePoll() => _pollTicks = 0;

    private int Receive(Span<byte> destination)
    {
        try
        {
            _ = PollForBytes();
            return socket.Receive(destination, SocketFlags.None);
        }
        catch (SocketException ex)
        {
            throw new IOException(ex.Message, ex);
        }
        catch (ObjectDisposedException)
        {
            return 0;
        }
    }

    /// <summary>
    /// The receive poll: while the socket has no bytes, spins for at most the poll time (see remarks);
    /// true once it has some, false when the poll is off or ran out. Socket failures reach the caller.
    /// </summary>
    private bool PollForBytes()
    {
        if (_pollTicks <= 0)
        {
            return false;
        }

        if (socket.Available > 0)
        {
            return true; // the usual case on a busy connection: no clock read
        }

        var until = Stopwatch.GetTimestamp() + _pollTicks;
        while (socket.Available == 0)
        {
            if (Stopwatch.GetTimestamp() >= until)
            {
                return false;
            }

            Thread.SpinWait(16);
        }

        return true;
    }

    private int Available()
    {
        try
        {
            return socket.Available;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return 1; // let the receive itself report the failure
        }
    }
}
