using System.Diagnostics;
using System.Net.Sockets;

namespace Tidemark.Server;

/// <summary>
/// A stream over a connected socket whose asynchronous reads and writes are plain blocking system
/// calls that complete synchronously. A protocol connection that awaits it on its own thread
/// therefore runs start to end on that thread: the kernel wakes the thread blocked in recv when a
/// request arrives, and nothing is handed to the socket engine's epoll thread or the thread pool
/// (DESIGN.md, data-path performance; measured in docs/BENCHMARKS.md, run 2 of the NBD table).
/// </summary>
/// <remarks>
/// Cancelling a read (a pipe reader's CancelPendingRead, or the server stopping) shuts the socket's
/// receive side down, which makes the blocked recv return end of stream: a cancelled read is the
/// end of that connection, which is how the protocol connections use it.
/// </remarks>
/// <param name="socket">A connected stream socket in blocking mode.</param>
/// <param name="poll">
/// How long a read that finds no data waits actively (asking the kernel whether data arrived) before
/// it blocks: a request that arrives within it is served without the wake-up of a sleeping thread,
/// which at queue depth 1 is most of the latency. Zero blocks at once.
/// </param>
internal sealed class BlockingSocketStream(Socket socket, TimeSpan poll) : Stream
{
    private readonly long _pollTicks = (long)(poll.TotalSeconds * Stopwatch.Frequency);

    /// <summary>
    /// Set while the connection negotiates: a read that would block then waits on the shared poller
    /// instead (no thread held, see <see cref="SocketReadiness"/>); null in the data phase.
    /// </summary>
    public SocketReadiness.Registration? Negotiation { get; set; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
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

    /// <summary>Ends the connection both ways: also a send blocked on a peer that stopped reading.</summary>
    public void ShutdownBoth()
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already closed or reset.
        }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        try
        {
            if (_pollTicks > 0 && socket.Available == 0)
            {
                var until = Stopwatch.GetTimestamp() + _pollTicks;
                while (socket.Available == 0 && Stopwatch.GetTimestamp() < until)
                {
                    Thread.SpinWait(16);
                }
            }

            return socket.Receive(buffer, SocketFlags.None);
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

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        if (Negotiation is { } negotiation && Available() == 0)
        {
            return ReadWhenReadableAsync(negotiation, buffer, cancellationToken);
        }

        using var registration = cancellationToken.CanBeCanceled
            ? cancellationToken.UnsafeRegister(static state => ((BlockingSocketStream)state!).ShutdownReceive(), this)
            : default;
        var read = Read(buffer.Span);
        return read == 0 && cancellationToken.IsCancellationRequested
            ? ValueTask.FromCanceled<int>(cancellationToken)
            : ValueTask.FromResult(read);
    }

    private async ValueTask<int> ReadWhenReadableAsync(SocketReadiness.Registration negotiation, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        // Cancelling shuts the receive side down, which the poller reports as readable (end of stream).
        using (cancellationToken.UnsafeRegister(static state => ((BlockingSocketStream)state!).ShutdownReceive(), this))
        {
            await negotiation.WaitReadableAsync().ConfigureAwait(false);
        }

        cancellationToken.ThrowIfCancellationRequested();

        // Readable: data, end of stream or an error is there, so this does not block.
        return Read(buffer.Span);
    }

    private int Available()
    {
        try
        {
            return socket.Available;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return 1; // let the read itself report the failure
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        try
        {
            while (!buffer.IsEmpty)
            {
                buffer = buffer[socket.Send(buffer, SocketFlags.None)..];
            }
        }
        catch (SocketException ex)
        {
            throw new IOException(ex.Message, ex);
        }
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        try
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }
        catch (IOException ex)
        {
            return ValueTask.FromException(ex);
        }
        catch (ObjectDisposedException ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            socket.Dispose();
        }

        base.Dispose(disposing);
    }
}
