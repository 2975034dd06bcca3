using System.Collections.Concurrent;
using System.Diagnostics;

namespace Tidemark.Server.Metrics;

/// <summary>Kinds of I/O counted per device.</summary>
public enum IoOperation
{
    Read,
    Write,
    Flush,
    Unmap,
    WriteZeroes,
    CompareAndWrite,
}

/// <summary>
/// I/O counters per exported device (volume, view or snapshot, by its name), shared by every export of
/// it and kept for the life of the process, as Prometheus counters must be. Devices are wrapped once
/// when an export opens them; the counting costs two timestamps and a few atomic adds per request.
/// </summary>
public sealed class IoMetrics
{
    private readonly ConcurrentDictionary<string, DeviceStats> _devices = new(StringComparer.Ordinal);

    public IBlockDevice Wrap(string name, IBlockDevice device) =>
        new MeteredBlockDevice(device, _devices.GetOrAdd(name, static n => new DeviceStats(n)));

    public DeviceStats? Find(string name) => _devices.TryGetValue(name, out var stats) ? stats : null;

    public IReadOnlyList<DeviceStats> Devices => [.. _devices.Values.OrderBy(d => d.Name, StringComparer.Ordinal)];
}

/// <summary>The counters of one device, one <see cref="OperationStats"/> per <see cref="IoOperation"/>.</summary>
public sealed class DeviceStats
{
    private readonly OperationStats[] _operations;

    public DeviceStats(string name)
    {
        Name = name;
        _operations = [.. Enum.GetValues<IoOperation>().Select(o => new OperationStats(o))];
    }

    public string Name { get; }

    public OperationStats this[IoOperation operation] => _operations[(int)operation];

    public IReadOnlyList<OperationStats> Operations => _operations;

    private long _noSpaceErrors;

    /// <summary>Writes refused because the pool (or the file system under it) had no space.</summary>
    public long NoSpaceErrors => Interlocked.Read(ref _noSpaceErrors);

    internal void CountNoSpace() => Interlocked.Increment(ref _noSpaceErrors);
}

/// <summary>Count, bytes, errors and a latency histogram of one kind of operation.</summary>
public sealed class OperationStats
{
    /// <summary>Upper bounds of the latency buckets, in seconds (the last bucket, +Inf, is implied).</summary>
    public static readonly double[] BucketBounds = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

    private static readonly long[] BoundTicks = [.. BucketBounds.Select(s => (long)(s * Stopwatch.Frequency))];

    private readonly long[] _buckets = new long[BucketBounds.Length + 1];
    private long _count;
    private long _bytes;
    private long _errors;
    private long _ticks;

    public OperationStats(IoOperation operation)
    {
        Operation = operation;
    }

    public IoOperation Operation { get; }

    public long Count => Interlocked.Read(ref _count);

    public long Bytes => Interlocked.Read(ref _bytes);

    public long Errors => Interlocked.Read(ref _errors);

    public double SumSeconds => (double)Interlocked.Read(ref _ticks) / Stopwatch.Frequency;

    /// <summary>Non-cumulative bucket counts; index <see cref="BucketBounds"/>.Length is the +Inf bucket.</summary>
    public long[] Buckets => [.. _buckets.Select((_, i) => Interlocked.Read(ref _buckets[i]))];

    public void Record(long bytes, long elapsedTicks, bool failed)
    {
        var bucket = 0;
        while (bucket < BoundTicks.Length && elapsedTicks > BoundTicks[bucket])
        {
            bucket++;
        }

        Interlocked.Increment(ref _buckets[bucket]);
        Interlocked.Add(ref _ticks, elapsedTicks);
        Interlocked.Increment(ref _count);
        if (failed)
        {
            Interlocked.Increment(ref _errors);
        }
        else
        {
            Interlocked.Add(ref _bytes, bytes);
        }
    }
}
