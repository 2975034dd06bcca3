namespace Tidemark.Engine.Storage;

/// <summary>
/// Bounds the reads a RADOS store has in flight across all its callers (ADR 0017): at most
/// <see cref="MaxReads"/> object reads and <see cref="MaxBytes"/> bytes, so many connections reading
/// at once queue here instead of piling unbounded work onto the OSDs. A read takes all its pieces at
/// once (a caller never holds some while waiting for more, so two large reads cannot deadlock), and
/// a read larger than the byte bound still goes when nothing else is in flight.
/// </summary>
internal sealed class RadosReadGate
{
    /// <summary>Object reads in flight at once, at most (the same bound as writes).</summary>
    public const int MaxReads = 64;

    /// <summary>Bytes being read at once, at most.</summary>
    public const long MaxBytes = 64L << 20;

    // Monitor, not Lock: a caller waits on it for room.
    private readonly object _lock = new();
    private int _reads;
    private long _bytes;
    private int _peak;

    /// <summary>The most object reads that were in flight at once since the store opened.</summary>
    public int PeakReads => Volatile.Read(ref _peak);

    public void Enter(int pieces, long bytes)
    {
        lock (_lock)
        {
            while (_reads > 0 && (_reads + pieces > MaxReads || _bytes + bytes > MaxBytes))
            {
                Monitor.Wait(_lock);
            }

            _reads += pieces;
            _bytes += bytes;
            _peak = Math.Max(_peak, _reads);
        }
    }

    public void Exit(int pieces, long bytes)
    {
        lock (_lock)
        {
            _reads -= pieces;
            _bytes -= bytes;
            Monitor.PulseAll(_lock);
        }
    }
}
