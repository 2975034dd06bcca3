using Tidemark.Server.Api;

namespace Tidemark.Server.Tests;

/// <summary>
/// The bridge between an asynchronous HTTP body and the synchronous stream reader and writer: memory
/// stays bounded whatever the body's length, and a failure or an early stop on either side ends
/// the other instead of leaving it waiting.
/// </summary>
public sealed class SynchronousBodyTests
{
    private static readonly TimeSpan Hang = TimeSpan.FromSeconds(60);

    /// <summary>What may sit between the body and the consumer: the pipe's bound, one read into it, one read out.</summary>
    private const long Bound = SynchronousBody.PauseBytes + (2L * SynchronousBody.SegmentBytes);

    [Fact]
    public async Task ReadAsync_AMultiGibBody_IsNeverBufferedBeyondTheBound()
    {
        const long length = 4L << 30;
        var body = new CountingSource(length);
        var furthestAhead = 0L;

        var consumed = await SynchronousBody.ReadAsync(
            body,
            input =>
            {
                var buffer = new byte[SynchronousBody.SegmentBytes];
                long total = 0;
                int read;
                while ((read = input.Read(buffer)) > 0)
                {
                    total += read;
                    furthestAhead = Math.Max(furthestAhead, body.Produced - total);
                }

                return total;
            },
            CancellationToken.None).WaitAsync(Hang);

        Assert.Equal(length, consumed);
        Assert.InRange(furthestAhead, 1, Bound);
    }

    [Fact]
    public async Task ReadAsync_BodyBreaksOff_TheConsumersNextReadFailsWithTheBodysError()
    {
        var body = new FailingSource(100_000, new IOException("Unexpected end of request content."));
        Exception? seen = null;

        var read = await SynchronousBody.ReadAsync(
            body,
            input =>
            {
                var total = 0L;
                try
                {
                    var buffer = new byte[4096];
                    int n;
                    while ((n = input.Read(buffer)) > 0)
                    {
                        total += n;
                    }
                }
                catch (IOException ex)
                {
                    seen = ex;
                }

                return total;
            },
            CancellationToken.None).WaitAsync(Hang);

        // What was still in the pipe may be dropped with the failure: a broken stream is discarded or resumed from what was applied.
        Assert.InRange(read, 0, 100_000);
        Assert.Equal("Unexpected end of request content.", Assert.IsType<IOException>(seen).Message);
    }

    [Fact]
    public async Task ReadAsync_ConsumerRefusesWhileTheClientStalls_TheRefusalIsTheAnswerOnceTheRequestEnds()
    {
        var body = new StallingSource(1000);
        using var aborted = new CancellationTokenSource();
        var refusedAt = new TaskCompletionSource();

        var answer = SynchronousBody.ReadAsync<long>(
            body,
            input =>
            {
                input.ReadExactly(new byte[1000]);
                refusedAt.SetResult();
                throw new InvalidDataException("not a snapshot stream");
            },
            aborted.Token);
        await refusedAt.Task.WaitAsync(Hang);

        // Kestrel ends a stalled request (its minimum data rate); the consumer's refusal, not the
        // cancellation, is what the request answers with.
        await aborted.CancelAsync();
        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => answer.WaitAsync(Hang));

        Assert.Equal("not a snapshot stream", refused.Message);
    }

    [Fact]
    public async Task ReadAsync_ConsumerStopsEarly_TheRestOfTheBodyIsNotCopied()
    {
        var body = new CountingSource(1L << 30);

        var first = await SynchronousBody.ReadAsync(
            body,
            input =>
            {
                var header = new byte[16];
                input.ReadExactly(header);
                return header.Length;
            },
            CancellationToken.None).WaitAsync(Hang);

        Assert.Equal(16, first);
        Assert.InRange(body.Produced, 16, Bound);
    }

    [Fact]
    public async Task WriteAsync_ALongResponse_IsNeverBufferedBeyondTheBound()
    {
        const long length = 512L << 20;
        var body = new CountingSink();
        var furthestAhead = 0L;

        await SynchronousBody.WriteAsync(
            body,
            (output, _) =>
            {
                var chunk = new byte[4096];
                for (long written = 0; written < length; written += chunk.Length)
                {
                    output.Write(chunk);
                    furthestAhead = Math.Max(furthestAhead, written + chunk.Length - body.Received);
                }
            },
            CancellationToken.None).WaitAsync(Hang);

        Assert.Equal(length, body.Received);
        Assert.InRange(furthestAhead, 1, Bound);
    }

    [Fact]
    public async Task WriteAsync_AFlushedSmallWrite_IsSentBeforeTheProducerWritesMore()
    {
        var body = new CountingSink();
        var sawItSent = false;

        await SynchronousBody.WriteAsync(
            body,
            (output, _) =>
            {
                // Less than a segment: only the flush hands it over while the producer waits.
                output.Write(new byte[10]);
                output.Flush();
                var waited = System.Diagnostics.Stopwatch.StartNew();
                while (body.Received < 10 && waited.Elapsed < Hang)
                {
                    Thread.Sleep(1);
                }

                sawItSent = body.Received == 10;
            },
            CancellationToken.None).WaitAsync(Hang);

        Assert.True(sawItSent);
        Assert.Equal(10, body.Received);
    }

    [Fact]
    public async Task WriteAsync_ClientGone_StopsTheProducerAndRethrowsTheClientsError()
    {
        var body = new CountingSink(failAfter: 3 << 20);
        var producerStopped = false;

        var error = await Assert.ThrowsAsync<IOException>(() => SynchronousBody.WriteAsync(
            body,
            (output, _) =>
            {
                try
                {
                    // Ignores its token on purpose: a failing write alone must stop it.
                    var chunk = new byte[4096];
                    while (true)
                    {
                        output.Write(chunk);
                    }
                }
                finally
                {
                    producerStopped = true;
                }
            },
            CancellationToken.None).WaitAsync(Hang));

        Assert.Equal("connection reset", error.Message);
        Assert.True(producerStopped);
    }

    [Fact]
    public async Task WriteAsync_ProducerFails_ItsErrorIsRethrown()
    {
        var body = new CountingSink();

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => SynchronousBody.WriteAsync(
            body,
            (output, _) =>
            {
                output.Write(new byte[10]);
                output.Flush();
                throw new InvalidOperationException("snapshot deleted while sending");
            },
            CancellationToken.None).WaitAsync(Hang));

        Assert.Equal("snapshot deleted while sending", error.Message);
    }

    /// <summary>A request body of <c>length</c> bytes, made as it is read, counting what it gave out.</summary>
    private sealed class CountingSource(long length) : ReadStream
    {
        private long _produced;

        public long Produced => Interlocked.Read(ref _produced);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = (int)Math.Min(buffer.Length, length - Produced);
            Interlocked.Add(ref _produced, n);
            return ValueTask.FromResult(n);
        }
    }

    /// <summary>A body that gives <c>length</c> bytes, then fails as a reset connection does.</summary>
    private sealed class FailingSource(long length, Exception failure) : ReadStream
    {
        private long _given;

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_given == length)
            {
                return ValueTask.FromException<int>(failure);
            }

            var n = (int)Math.Min(buffer.Length, length - _given);
            _given += n;
            return ValueTask.FromResult(n);
        }
    }

    /// <summary>A client that sends <c>length</c> bytes, then nothing, never closing.</summary>
    private sealed class StallingSource(long length) : ReadStream
    {
        private long _given;

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_given == length)
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }

            var n = (int)Math.Min(buffer.Length, length - _given);
            _given += n;
            return n;
        }
    }

    private abstract class ReadStream : Stream
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

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new InvalidOperationException("the bridge must read the body asynchronously");

        public abstract override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>A response body that counts what it received and, given a limit, fails past it like a reset connection.</summary>
    private sealed class CountingSink(long failAfter = long.MaxValue) : Stream
    {
        private long _received;

        public long Received => Interlocked.Read(ref _received);

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Received + buffer.Length > failAfter)
            {
                return ValueTask.FromException(new IOException("connection reset"));
            }

            Interlocked.Add(ref _received, buffer.Length);
            return ValueTask.CompletedTask;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => throw new InvalidOperationException("the bridge must write the body asynchronously");

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
