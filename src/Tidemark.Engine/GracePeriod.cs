namespace Tidemark.Engine;

/// <summary>
/// Keeps freed blocks out of reuse while an I/O that may still hold their address is in flight
/// (a two-counter quiescent-state scheme, like RCU). Every read and write runs between
/// <see cref="Enter"/> and <see cref="Exit"/>; <see cref="WaitForReaders"/> returns once every
/// operation that started before it has finished.
/// </summary>
internal sealed class GracePeriod
{
    private readonly long[] _active = new long[2 * 8]; // two counters, a cache line apart
    private readonly Lock _flip = new();
    private int _phase;

    public int Enter()
    {
        while (true)
        {
            var phase = Volatile.Read(ref _phase);
            Interlocked.Increment(ref _active[phase * 8]);
            if (Volatile.Read(ref _phase) == phase)
            {
                return phase;
            }

            Interlocked.Decrement(ref _active[phase * 8]);
        }
    }

    public void Exit(int phase) => Interlocked.Decrement(ref _active[phase * 8]);

    public void WaitForReaders()
    {
        lock (_flip)
        {
            // Flip twice so that operations in either phase at the time of the call have drained.
            for (var i = 0; i < 2; i++)
            {
                var old = _phase;
                Volatile.Write(ref _phase, 1 - old);
                var spinner = default(SpinWait);
                while (Volatile.Read(ref _active[old * 8]) != 0)
                {
                    spinner.SpinOnce();
                }
            }
        }
    }
}
