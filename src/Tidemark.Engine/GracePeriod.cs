namespace Tidemark.Engine;

/// <summary>
/// Keeps freed blocks out of reuse while an I/O that may still hold their address is in flight
/// (a two-phase quiescent-state scheme, like RCU, with per-thread striped counters). Every read and
/// write runs between <see cref="Enter"/> and <see cref="Exit"/>; <see cref="WaitForReaders"/>
/// returns once every operation that started before it has finished.
/// </summary>
internal sealed class GracePeriod
{
    private const int PhaseWidth = IoGate.StripeCount * IoGate.StripeSpacing;
    private readonly long[] _active = new long[2 * PhaseWidth];
    private readonly Lock _flip = new();
    private int _phase;

    public int Enter()
    {
        var stripe = IoGate.StripeOffset();
        while (true)
        {
            var phase = Volatile.Read(ref _phase);
            var slot = (phase * PhaseWidth) + stripe;
            Interlocked.Increment(ref _active[slot]);
            if (Volatile.Read(ref _phase) == phase)
            {
                return slot;
            }

            Interlocked.Decrement(ref _active[slot]);
        }
    }

    public void Exit(int slot) => Interlocked.Decrement(ref _active[slot]);

    public void WaitForReaders()
    {
        lock (_flip)
        {
            // Flip twice so that operations in either phase at the time of the call have drained.
            for (var i = 0; i < 2; i++)
            {
                var old = _phase;
                Interlocked.Exchange(ref _phase, 1 - old);
                IoGate.WaitForZero(_active, old * IoGate.StripeCount, IoGate.StripeCount);
            }
        }
    }
}
