namespace Tidemark.Engine;

/// <summary>
/// Progress of a long engine operation (deleting a large snapshot or volume, verifying a pool), read
/// by another thread while the operation runs: <see cref="Done"/> of <see cref="Total"/> units
/// (<see cref="Total"/> is null while unknown), and a cancellation request the operation honours
/// where stopping is safe (verify; a deletion, once started, always finishes).
/// </summary>
public sealed class OperationProgress
{
    private long _done;
    private long _skipped;
    private long _total = -1;

    public OperationProgress(CancellationToken cancellation = default)
    {
        Cancellation = cancellation;
    }

    public CancellationToken Cancellation { get; }

    public long Done => Interlocked.Read(ref _done);

    public long? Total => Interlocked.Read(ref _total) is var t && t >= 0 ? t : null;

    /// <summary>What the units are ("records", "bytes").</summary>
    public string Unit { get; set; } = "records";

    public void SetTotal(long total) => Interlocked.Exchange(ref _total, total);

    public void Advance(long units) => Interlocked.Add(ref _done, units);

    /// <summary>Units of <see cref="Done"/> that were done before this run (a resumed transfer): they do not count towards the rate.</summary>
    public long Skipped => Interlocked.Read(ref _skipped);

    /// <summary>
    /// Seconds left at this run's rate after <paramref name="elapsed"/> (units done before it, by an
    /// interrupted attempt, do not count towards the rate); null while the total or the rate is unknown.
    /// </summary>
    public double? EtaSeconds(TimeSpan elapsed)
    {
        var total = Total;
        var done = Done;
        var doneHere = done - Skipped;
        return total is > 0 && doneHere > 0 && elapsed.TotalSeconds > 0.5
            ? Math.Max(0, (total.Value - done) / (doneHere / elapsed.TotalSeconds))
            : null;
    }

    /// <summary>Counts units done earlier (by an interrupted attempt) as done, without crediting this run's rate with them.</summary>
    public void Skip(long units)
    {
        Interlocked.Add(ref _skipped, units);
        Interlocked.Add(ref _done, units);
    }
}
