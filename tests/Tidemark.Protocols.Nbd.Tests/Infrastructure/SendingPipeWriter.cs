using System.IO.Pipelines;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

/// <summary>
/// An output that offers <see cref="IReplySendFeature"/> over an in-memory pipe, as the plain TCP
/// transport does over its socket: the threads that sent on themselves and the blocks lent for large
/// payloads are counted. The pipe under it must not pause its writer (its flushes complete at once,
/// as a send with room does).
/// </summary>
internal sealed class SendingPipeWriter(PipeWriter inner) : PipeWriter, IReplySendFeature
{
    private const int LentOffset = 24; // not page-aligned: the protocol must use the offset it is given
    private readonly HashSet<byte[]> _outstanding = new(ReferenceEqualityComparer.Instance);
    private int _lent;
    private int _written;
    private readonly List<string?> _sendThreads = [];
    private int _returned;

    /// <summary>The names of the threads that called <see cref="SendOnThisThread"/>, in order.</summary>
    public string?[] SendThreads
    {
        get
        {
            lock (_sendThreads)
            {
                return [.. _sendThreads];
            }
        }
    }

    public int Lent => Volatile.Read(ref _lent);

    public int WrittenPayloads => Volatile.Read(ref _written);

    public int Returned => Volatile.Read(ref _returned);

    public override void Advance(int bytes) => inner.Advance(bytes);

    public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

    public override void CancelPendingFlush() => inner.CancelPendingFlush();

    public override void Complete(Exception? exception = null) => inner.Complete(exception);

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

    public bool SendOnThisThread()
    {
        lock (_sendThreads)
        {
            _sendThreads.Add(Thread.CurrentThread.Name);
        }

        return !SendNow().IsCompleted;
    }

    public byte[] RentPayload(int lengthBytes, out int offset)
    {
        var block = new byte[lengthBytes + LentOffset];
        lock (_outstanding)
        {
            _outstanding.Add(block);
        }

        Interlocked.Increment(ref _lent);
        offset = LentOffset;
        return block;
    }

    public void WritePayload(byte[] block, int offset, int lengthBytes)
    {
        Give(block);
        Assert.Equal(LentOffset, offset);
        block.AsSpan(offset, lengthBytes).CopyTo(inner.GetSpan(lengthBytes)); // what the socket's send takes
        inner.Advance(lengthBytes);
        Interlocked.Increment(ref _written);
    }

    public void ReturnPayload(byte[] block)
    {
        Give(block);
        Interlocked.Increment(ref _returned);
    }

    private void Give(byte[] block)
    {
        lock (_outstanding)
        {
            Assert.True(_outstanding.Remove(block), "a block that was not lent, or given back twice");
        }
    }

    private FlushResult SendNow()
    {
        var flush = inner.FlushAsync();
        if (flush.IsCompleted)
        {
            return flush.Result;
        }

        Assert.Fail("the pipe under a SendingPipeWriter paused its writer");
        return default;
    }
}
