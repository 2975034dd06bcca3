namespace Tidemark.Replication;

/// <summary>
/// Reads from <paramref name="inner"/> no faster than <paramref name="bytesPerSecond"/> on average
/// (a replica's bandwidth limit, so replication leaves room on a shared WAN link). Reads are cut to
/// a tenth of a second's worth, and each waits until the bytes read so far are due: a burst is at
/// most one such piece.
/// </summary>
public sealed class RateLimitedStream(Stream inner, long bytesPerSecond, TimeProvider time) : Stream
{
    private readonly int _pieceBytes = (int)Math.Clamp(bytesPerSecond / 10, 4096, 1 << 20);
    private readonly long _started = time.GetTimestamp();
    private long _bytes;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => _bytes;
        set => throw new NotSupportedException();
    }

    public override int Read(byte[] buffer, int offset, int count) =>
        ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        // Wait until what was read before is due, then read at most one more piece.
        var due = TimeSpan.FromSeconds((double)_bytes / bytesPerSecond) - time.GetElapsedTime(_started);
        if (due > TimeSpan.Zero)
        {
            await Task.Delay(due, time, cancellationToken);
        }

        var n = await inner.ReadAsync(buffer[..Math.Min(buffer.Length, _pieceBytes)], cancellationToken);
        _bytes += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
