using System.IO.Pipelines;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

/// <summary>Counts flushes, to check that replies of one receive batch leave in one write.</summary>
internal sealed class CountingPipeWriter(PipeWriter inner) : PipeWriter
{
    private readonly List<string?> _flushThreads = [];
    private int _flushes;

    public int Flushes => Volatile.Read(ref _flushes);

    /// <summary>The names of the threads that flushed (sent replies), in order.</summary>
    public string?[] FlushThreads
    {
        get
        {
            lock (_flushThreads)
            {
                return [.. _flushThreads];
            }
        }
    }

    public override void Advance(int bytes) => inner.Advance(bytes);

    public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);

    public override void CancelPendingFlush() => inner.CancelPendingFlush();

    public override void Complete(Exception? exception = null) => inner.Complete(exception);

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _flushes);
        lock (_flushThreads)
        {
            _flushThreads.Add(Thread.CurrentThread.Name);
        }

        return inner.FlushAsync(cancellationToken);
    }
}
