namespace Tidemark.Replication;

/// <summary>
/// Reads from <paramref name="inner"/> no faster than <paramref name="bytesPerSecond"/> on average
/// (a replica's bandwidth limit, so replication leaves room on a shared WAN link). Reads are cut to
/// a tenth of a second's worth, and each waits until the bytes read so far are due: a burst is at
/// most one such piece.
/// </summary>
public sealed class RateLimitedStream(Stream inner, long bytesPerSecond, TimeProvider time) : ReadOnlyWrapperStream(inner)
{
    private readonly int _pieceBytes = (int)Math.Clamp(bytesPerSecond / 10, 4096, 1 << 20);
    private readonly long _started = time.GetTimestamp();

    public override int Read(byte[] buffer, int offset, int count)
    {
        // A synchronous reader waits on the same clock, on a timer of its own: no blocking on a task.
        if (Due() is { } due)
        {
            using var elapsed = new ManualResetEventSlim();
            using var timer = time.CreateTimer(_ => elapsed.Set(), null, due, Timeout.InfiniteTimeSpan);
            elapsed.Wait();
        }

        return Counted(Inner.Read(buffer, offset, Math.Min(count, _pieceBytes)));
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        // Wait until what was read before is due, then read at most one more piece.
        if (Due() is { } due)
        {
            await Task.Delay(due, time, cancellationToken);
        }

        return Counted(await Inner.ReadAsync(buffer[..Math.Min(buffer.Length, _pieceBytes)], cancellationToken));
    }

    private TimeSpan? Due()
    {
        var due = TimeSpan.FromSeconds((double)BytesRead / bytesPerSecond) - time.GetElapsedTime(_started);
        return due > TimeSpan.Zero ? due : null;
    }

    private int Counted(int n)
    {
        BytesRead += n;
        return n;
    }
}
