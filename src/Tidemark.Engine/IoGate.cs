namespace Tidemark.Engine;

/// <summary>
/// Lets many I/O operations run at once and an administrative operation (snapshot, rollback, resize,
/// delete) stop them for an instant. Readers count themselves in per-thread stripes on separate cache
/// lines, so concurrent I/O does not bounce one shared counter (ReaderWriterLockSlim took half the
/// 4K read rate on two threads here, see docs/BENCHMARKS.md).
/// </summary>
internal sealed class IoGate
{
    private const int Stripes = 16;
    private const int Spacing = 16; // longs: 128 bytes between stripes
    private readonly long[] _active = new long[Stripes * Spacing];
    private readonly Lock _exclusive = new();
    private int _closed;

    /// <summary>Enters for one I/O; returns the token to pass to <see cref="Exit"/>.</summary>
    public int Enter()
    {
        var stripe = (Environment.CurrentManagedThreadId & (Stripes - 1)) * Spacing;
        while (true)
        {
            Interlocked.Increment(ref _active[stripe]); // full fence, pairs with the one in EnterExclusive
            if (Volatile.Read(ref _closed) == 0)
            {
                return stripe;
            }

            Interlocked.Decrement(ref _active[stripe]);
            var spinner = default(SpinWait);
            while (Volatile.Read(ref _closed) != 0)
            {
                spinner.SpinOnce(sleep1Threshold: 30);
            }
        }
    }

    public void Exit(int token) => Interlocked.Decrement(ref _active[token]);

    /// <summary>Waits for running I/O to finish and holds new I/O until <see cref="ExitExclusive"/>.</summary>
    public void EnterExclusive()
    {
        _exclusive.Enter();
        Interlocked.Exchange(ref _closed, 1);
        WaitForZero(_active, 0, Stripes);
    }

    public void ExitExclusive()
    {
        Volatile.Write(ref _closed, 0);
        _exclusive.Exit();
    }

    public static void WaitForZero(long[] counters, int first, int stripes)
    {
        var spinner = default(SpinWait);
        for (var i = 0; i < stripes; i++)
        {
            while (Volatile.Read(ref counters[(first + i) * Spacing]) != 0)
            {
                spinner.SpinOnce(sleep1Threshold: 30);
            }
        }
    }

    public static int StripeOffset() => (Environment.CurrentManagedThreadId & (Stripes - 1)) * Spacing;

    public const int StripeCount = Stripes;

    public const int StripeSpacing = Spacing;
}
