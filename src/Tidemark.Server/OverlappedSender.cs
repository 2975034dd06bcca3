using System.IO.Pipelines;
using System.Net.Sockets;

namespace Tidemark.Server;

/// <summary>
/// The output side of a block-protocol connection: replies are written into a pipe and sent on the
/// socket with blocking calls, either at once on the connection's own thread (small replies: no
/// hand-off, DESIGN.md data-path performance) or, when a flush carries at least
/// <see cref="InlineLimitBytes"/> or a send is already under way, by a sender thread of this
/// connection, so that sending one large reply overlaps reading the disk for the next (what
/// nbdkit's thread pool gives it for 1 MiB reads). Replies leave in the order they were flushed.
/// </summary>
internal sealed class OverlappedSender : PipeWriter, IDisposable
{
    private readonly Socket _socket;
    private readonly Pipe _pipe;
    private readonly PipeWriter _writer;
    private readonly PipeReader _reader;
    private readonly int _inlineLimitBytes;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private long _unflushedBytes;
    private int _sending;
    private volatile bool _completed;
    private bool _readerDone;

    public OverlappedSender(Socket socket, int inlineLimitBytes, string threadName)
    {
        _socket = socket;
        _inlineLimitBytes = inlineLimitBytes;
        _pipe = new Pipe(new PipeOptions(
            readerScheduler: PipeScheduler.Inline,
            writerScheduler: PipeScheduler.ThreadPool,
            pauseWriterThreshold: 16 << 20,
            resumeWriterThreshold: 8 << 20,
            minimumSegmentSize: 64 * 1024,
            useSynchronizationContext: false));
        _writer = _pipe.Writer;
        _reader = _pipe.Reader;
        _thread = new Thread(SendLoop) { IsBackground = true, Name = threadName };
        _thread.Start();
    }

    /// <summary>Flushes of at least this many bytes go to the sender thread.</summary>
    public int InlineLimitBytes => _inlineLimitBytes;

    public override void Advance(int bytes)
    {
        _writer.Advance(bytes);
        _unflushedBytes += bytes;
    }

    public override Memory<byte> GetMemory(int sizeHint = 0) => _writer.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => _writer.GetSpan(sizeHint);

    public override void CancelPendingFlush() => _writer.CancelPendingFlush();

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        var bytes = _unflushedBytes;
        _unflushedBytes = 0;

        // Committing never blocks here; it returns a pending flush only when 16 MiB are unsent,
        // and then it completes as the sender drains.
        var flush = _writer.FlushAsync(cancellationToken);
        Send(bytes);
        return flush;
    }

    public override void Complete(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }

        _completed = true;
        _writer.Complete(exception);
        _wake.Release();
    }

    /// <summary>Releases the wake-up semaphore once the sender thread has ended.</summary>
    public void Dispose()
    {
        if (!_thread.IsAlive)
        {
            _wake.Dispose();
        }
    }

    /// <summary>Waits until everything flushed before completion has been sent (or sending failed).</summary>
    public bool WaitUntilSent(TimeSpan timeout) => _thread.Join(timeout);

    private void Send(long bytes)
    {
        if (bytes < _inlineLimitBytes && Interlocked.CompareExchange(ref _sending, 1, 0) == 0)
        {
            try
            {
                Drain();
            }
            finally
            {
                Volatile.Write(ref _sending, 0);
            }

            return;
        }

        _wake.Release();
    }

    private void SendLoop()
    {
        while (true)
        {
            _wake.Wait();
            var spin = default(SpinWait);
            while (Interlocked.CompareExchange(ref _sending, 1, 0) != 0)
            {
                // The connection thread is sending a small reply inline; it takes microseconds.
                spin.SpinOnce();
            }

            bool finished;
            try
            {
                finished = Drain();
            }
            finally
            {
                Volatile.Write(ref _sending, 0);
            }

            if (finished)
            {
                return;
            }
        }
    }

    /// <summary>Sends everything committed so far; true when the output is complete and all of it sent (or failed).</summary>
    private bool Drain()
    {
        if (_readerDone)
        {
            return true;
        }

        while (_reader.TryRead(out var result))
        {
            var buffer = result.Buffer;
            try
            {
                foreach (var segment in buffer)
                {
                    var span = segment.Span;
                    while (!span.IsEmpty)
                    {
                        span = span[_socket.Send(span, SocketFlags.None)..];
                    }
                }
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // The peer is gone: a later flush reports the output as completed, which ends the session.
                _readerDone = true;
                _reader.Complete(new IOException(ex.Message, ex));
                return true;
            }

            _reader.AdvanceTo(buffer.End);
            if (result.IsCompleted)
            {
                _readerDone = true;
                _reader.Complete();
                return true;
            }

            if (buffer.IsEmpty)
            {
                break;
            }
        }

        return false;
    }
}
