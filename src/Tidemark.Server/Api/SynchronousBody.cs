using System.Buffers;
using System.IO.Pipelines;

namespace Tidemark.Server.Api;

/// <summary>
/// Connects an HTTP body, read and written asynchronously, to the synchronous snapshot-stream
/// readers and writers (which run down to the engine) through a bounded pipe. The synchronous side
/// runs on a dedicated thread and waits only on the pipe; the socket I/O stays asynchronous, so no
/// thread-pool thread blocks on a slow or stalled client (what AllowSynchronousIO did), and at most
/// <see cref="PauseBytes"/> plus one read of the body sits in memory whatever the body's length.
/// </summary>
public static class SynchronousBody
{
    /// <summary>Unconsumed bytes at which the side feeding the pipe waits for the other.</summary>
    public const int PauseBytes = 1 << 20;

    /// <summary>The size of one read from the request body into the pipe.</summary>
    public const int SegmentBytes = 64 << 10;

    private static readonly PipeOptions Options = new(
        pauseWriterThreshold: PauseBytes,
        resumeWriterThreshold: PauseBytes / 2,
        minimumSegmentSize: SegmentBytes,
        useSynchronizationContext: false);

    /// <summary>
    /// Runs <paramref name="consume"/> on a dedicated thread over a stream of <paramref name="body"/>
    /// and returns its result. A body that fails (the client disconnected, a malformed chunk) reaches
    /// the consumer as the failure of its next read, as a synchronous body read would, so it
    /// discards or keeps what it applied as it always did; the consumer stopping early (done or
    /// refused) stops the copying at the body's next read. That read is never cancelled for it:
    /// Kestrel aborts the connection on a cancelled body read, and the refusal would never reach
    /// the client; a client that stalls instead is ended by Kestrel's minimum data rate.
    /// </summary>
    public static async Task<T> ReadAsync<T>(Stream body, Func<Stream, T> consume, CancellationToken cancellationToken)
    {
        var pipe = new Pipe(Options);
        var consumer = Task.Factory.StartNew(
            () =>
            {
                try
                {
                    using var input = new PipeInput(pipe.Reader);
                    return consume(input);
                }
                finally
                {
                    pipe.Reader.Complete();
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        try
        {
            while (true)
            {
                var read = await body.ReadAsync(pipe.Writer.GetMemory(SegmentBytes), cancellationToken);
                if (read == 0)
                {
                    break;
                }

                pipe.Writer.Advance(read);
                var flushed = await pipe.Writer.FlushAsync(cancellationToken);
                if (flushed.IsCompleted)
                {
                    break; // the consumer stopped reading: finished, or refused the stream
                }
            }

            await pipe.Writer.CompleteAsync();
        }
        catch (Exception ex)
        {
            // The readers treat I/O failures and cancellation as a broken stream (discard or keep
            // for resume); anything else from the body is a broken stream too.
            await pipe.Writer.CompleteAsync(ex is IOException or OperationCanceledException ? ex : new IOException($"reading the request body failed: {ex.Message}", ex));
        }

        return await consumer;
    }

    /// <summary>
    /// Runs <paramref name="produce"/> on a dedicated thread writing into a stream that is copied to
    /// <paramref name="body"/> asynchronously. When the client stops reading (disconnects), the
    /// producer is cancelled and its next write fails, so it stops instead of producing into nothing;
    /// the failure that ended the copy is rethrown once the producer has stopped.
    /// </summary>
    public static async Task WriteAsync(Stream body, Action<Stream, CancellationToken> produce, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var pipe = new Pipe(Options);
        var producer = Task.Factory.StartNew(
            () =>
            {
                try
                {
                    using var output = new PipeOutput(pipe.Writer);
                    produce(output, stop.Token);
                    output.Flush();
                    pipe.Writer.Complete();
                }
                catch (Exception ex)
                {
                    pipe.Writer.Complete(ex);
                    throw;
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        try
        {
            await pipe.Reader.CopyToAsync(body, cancellationToken);
            await pipe.Reader.CompleteAsync();
        }
        catch (Exception ex)
        {
            // Either the producer failed (the pipe hands its exception over, so this rethrows it)
            // or the client did; in both cases wait for the producer to be gone before answering.
            await stop.CancelAsync();
            await pipe.Reader.CompleteAsync(ex);
            await producer.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            throw;
        }

        await producer;
    }

    /// <summary>A read-only stream over a pipe, for one synchronous reader on its own thread.</summary>
    private sealed class PipeInput(PipeReader reader) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (buffer.IsEmpty)
            {
                return 0;
            }

            while (true)
            {
                // This thread exists to wait here: the pipe's writer is the asynchronous side.
                var result = reader.TryRead(out var ready) ? ready : reader.ReadAsync().AsTask().GetAwaiter().GetResult();
                var available = result.Buffer;
                if (available.IsEmpty)
                {
                    reader.AdvanceTo(available.End);
                    if (result.IsCompleted)
                    {
                        return 0;
                    }

                    continue;
                }

                var taken = (int)Math.Min(buffer.Length, available.Length);
                available.Slice(0, taken).CopyTo(buffer);
                reader.AdvanceTo(available.GetPosition(taken));
                return taken;
            }
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>
    /// A write-only stream into a pipe, for one synchronous writer on its own thread. Small writes
    /// (record headers) gather in the pipe and are handed over a segment at a time, not one wake-up
    /// of the copying side per write; the producer flushes the rest when it is done.
    /// </summary>
    private sealed class PipeOutput(PipeWriter writer) : Stream
    {
        private long _unflushed;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            writer.Write(buffer);
            _unflushed += buffer.Length;
            if (_unflushed >= SegmentBytes)
            {
                Flush();
            }
        }

        public override void Flush()
        {
            _unflushed = 0;
            var result = writer.FlushAsync().AsTask().GetAwaiter().GetResult();
            if (result.IsCompleted)
            {
                throw new IOException("the client stopped reading the response");
            }
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
