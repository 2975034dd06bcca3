using System.Globalization;
using Microsoft.Extensions.Logging;
using Tidemark.Engine;
using Tidemark.Engine.Control;

namespace Tidemark.Server.WebConsole;

/// <summary>
/// The pool's capacity over time, for the console's growth chart: a sample (capacity, used, volume
/// and snapshot counts) at start and every <see cref="Interval"/>, kept as control records in the
/// pool (kind "capacity-sample", so a copy of the pool carries its history) and bounded to the
/// newest <see cref="MaxSamples"/> (a week at the default interval): a few hundred KiB at most.
/// </summary>
public sealed class CapacityHistory : PeriodicService
{
    public const int MaxSamples = 2016;

    public static readonly TimeSpan DefaultInterval = TimeSpan.FromMinutes(5);

    /// <summary>Version 1: <see cref="CapacitySample"/>, named by its UTC time (yyyyMMddTHHmmssZ, so names sort by time).</summary>
    public static readonly ControlKind<CapacitySample> Kind = new("capacity-sample", 1);

    private readonly Lock _lock = new();
    private readonly Pool _pool;
    private readonly TimeProvider _time;
    private readonly List<KeyValuePair<string, CapacitySample>> _samples;

    public CapacityHistory(Pool pool, TimeProvider time, ILogger<CapacityHistory> logger)
        : base(time, logger)
    {
        _pool = pool;
        _time = time;
        _samples = [.. pool.Control.List(Kind).OrderBy(s => s.Key, StringComparer.Ordinal)];
    }

    public TimeSpan SampleInterval { get; init; } = DefaultInterval;

    protected override TimeSpan Interval => SampleInterval;

    protected override string WorkName => "Capacity sample";

    /// <summary>The samples, oldest first.</summary>
    public IReadOnlyList<CapacitySample> Samples
    {
        get
        {
            lock (_lock)
            {
                return [.. _samples.Select(s => s.Value)];
            }
        }
    }

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        // A sample at once: a fresh server has a first point, and a restart marks where the gap ended.
        Sample();
        return base.StartAsync(cancellationToken);
    }

    protected override void Tick() => Sample();

    /// <summary>Records the pool as it is now and drops the oldest samples past <see cref="MaxSamples"/>.</summary>
    public void Sample()
    {
        var info = _pool.GetInfo();
        var now = _time.GetUtcNow();
        var sample = new CapacitySample(now, info.CapacityBytes, info.UsedBytes, info.Volumes, info.Snapshots);
        var name = now.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        lock (_lock)
        {
            var batch = new ControlBatch();
            batch.Put(Kind, name, sample);
            _samples.RemoveAll(s => s.Key == name);
            _samples.Add(new(name, sample));
            var excess = _samples.Count - MaxSamples;
            if (excess > 0)
            {
                foreach (var old in _samples.Take(excess))
                {
                    batch.Delete(Kind, old.Key);
                }

                _samples.RemoveRange(0, excess);
            }

            _pool.Control.Update(batch);
        }
    }
}

/// <summary>One point of <see cref="CapacityHistory"/>.</summary>
public sealed record CapacitySample(DateTimeOffset Time, long CapacityBytes, long UsedBytes, int Volumes, int Snapshots);
