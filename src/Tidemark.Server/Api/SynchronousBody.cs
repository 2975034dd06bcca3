namespace Tidemark.Server.Api;

/// <summary>
/// Connects an HTTP body, read and written asynchronously, to the synchronous snapshot-stream
/// readers and writers (which run down to the engine, whose I/O is synchronous) through a bounded
/// hand-off (<see cref="BodyHandoff"/>). The synchronous side runs on a dedicated thread and waits
/// only on the hand-off's monitor; the socket I/O stays asynchronous and awaits the hand-off, so no
/// thread-pool thread blocks on a slow or stalled client (what AllowSynchronousIO did), no task is
/// waited on synchronously, and at most <see cref="PauseBytes"/> plus one read of the body sits in
/// memory whatever the body's length.
/// </summary>
public static class SynchronousBody
{
    /// <summary>Buffered bytes at which the side feeding the hand-off waits for the other.</summary>
    public const int PauseBytes = 1 << 20;

    /// <summary>The size of one read from the request body, and of the response writes gathered before they are sent.</summary>
    public const int SegmentBytes = 64 << 10;

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
        var handoff = new BodyHandoff(PauseBytes, SegmentBytes);
        var consumer = Task.Factory.StartNew(
            () =>
            {
                try
                {
                    using var input = new HandoffInput(handoff);
                    return consume(input);
                }
                finally
                {
                    handoff.CompleteReader();
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        try
        {
            while (true)
            {
                var room = await handoff.WaitForRoomAsync(SegmentBytes, cancellationToken);
                if (room.IsEmpty)
                {
                    break; // the consumer stopped reading: finished, or refused the stream
                }

                var read = await body.ReadAsync(room, cancellationToken);
                if (read == 0)
                {
                    break;
                }

                handoff.Commit(read);
            }

            handoff.CompleteWriter();
        }
        catch (Exception ex)
        {
            // The readers treat I/O failures and cancellation as a broken stream (discard or keep
            // for resume); anything else from the body is a broken stream too.
            handoff.CompleteWriter(ex is IOException or OperationCanceledException ? ex : new IOException($"reading the request body failed: {ex.Message}", ex));
        }

        try
        {
            return await consumer;
        }
        finally
        {
            // Both sides are done with the ring only now.
            handoff.Dispose();
        }
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
        var handoff = new BodyHandoff(PauseBytes, SegmentBytes);
        var producer = Task.Factory.StartNew(
            () =>
            {
                try
                {
                    using var output = new HandoffOutput(handoff);
                    produce(output, stop.Token);
                    handoff.CompleteWriter();
                }
                catch (Exception ex)
                {
                    handoff.CompleteWriter(ex);
                    throw;
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        try
        {
            while (true)
            {
                var data = await handoff.WaitForDataAsync(cancellationToken);
                if (data.IsEmpty)
                {
                    break;
                }

                await body.WriteAsync(data, cancellationToken);
                handoff.Consume(data.Length);
            }

            handoff.CompleteReader();
        }
        catch (Exception)
        {
            // Either the producer failed (the hand-off passes its exception on, so this rethrows it)
            // or the client did; in both cases wait for the producer to be gone before answering.
            await stop.CancelAsync();
            handoff.CompleteReader();
            await producer.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            handoff.Dispose();
            throw;
        }

        try
        {
            await producer;
        }
        finally
        {
            handoff.Dispose();
        }
    }

    /// <summary>A read-only stream over the hand-off, for one synchronous reader on its own thread.</summary>
    private sealed class HandoffInput(BodyHandoff handoff) : Stream
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

        // This thread exists to wait here: the hand-off's writer is the asynchronous side.
        public override int Read(Span<byte> buffer) => handoff.Read(buffer);

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>
    /// A write-only stream into the hand-off, for one synchronous writer on its own thread. Small
    /// writes (record headers) gather there and are sent a segment at a time, not one wake-up of the
    /// copying side per write; the producer's end sends the rest.
    /// </summary>
    private sealed class HandoffOutput(BodyHandoff handoff) : Stream
    {
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

        public override void Write(ReadOnlySpan<byte> buffer) => handoff.Write(buffer);

        public override void Flush() => handoff.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
