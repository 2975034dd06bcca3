using System.Diagnostics.Metrics;
using System.Globalization;

namespace Tidemark.Server.Metrics;

/// <summary>
/// The per-device I/O families of /metrics as observable instruments over <see cref="IoMetrics"/>'
/// counters: the I/O path keeps its few atomic adds, and the exporter reads the totals on a scrape.
/// The latency histogram stays the classic Prometheus triple (_bucket with le, _sum, _count) as three
/// observable counters, because System.Diagnostics.Metrics has no observable histogram and a
/// Histogram&lt;T&gt; would record on the I/O path (docs/adr/0019-metrics-exporter.md).
/// </summary>
internal static class IoInstruments
{
    private static readonly string[] BucketLabels =
        [.. OperationStats.BucketBounds.Select(b => b.ToString("R", CultureInfo.InvariantCulture)), "+Inf"];

    public static void Create(Meter meter, IoMetrics io)
    {
        meter.CreateObservableCounter("tidemark_io_operations_total", () => PerOperation(io, o => o.Count), description: "I/O requests served from each exported device, by operation.");
        meter.CreateObservableCounter("tidemark_io_bytes_total", () => PerOperation(io, o => o.Bytes), description: "Bytes read, written, unmapped or zeroed by completed requests.");
        meter.CreateObservableCounter("tidemark_io_errors_total", () => PerOperation(io, o => o.Errors), description: "Requests that failed in the engine.");
        meter.CreateObservableCounter("tidemark_io_latency_seconds_bucket", () => Buckets(io), description: "Time the engine took to serve each request (excludes the network): requests that took at most le seconds.");
        meter.CreateObservableCounter("tidemark_io_latency_seconds_sum", () => PerOperation(io, o => o.SumSeconds), description: "Time the engine took to serve each request (excludes the network): seconds, all requests together.");
        meter.CreateObservableCounter("tidemark_io_latency_seconds_count", () => PerOperation(io, o => o.Buckets.Sum()), description: "Time the engine took to serve each request (excludes the network): requests measured (the +Inf bucket).");
        meter.CreateObservableCounter(
            "tidemark_io_no_space_errors_total",
            () => io.Devices.Select(d => new Measurement<long>(d.NoSpaceErrors, new KeyValuePair<string, object?>("device", d.Name))),
            description: "Writes refused because the pool had no space, per device.");
    }

    public static string OperationLabel(IoOperation operation) => operation switch
    {
        IoOperation.Read => "read",
        IoOperation.Write => "write",
        IoOperation.Flush => "flush",
        IoOperation.Unmap => "unmap",
        IoOperation.WriteZeroes => "write_zeroes",
        IoOperation.CompareAndWrite => "compare_and_write",
        _ => operation.ToString().ToLowerInvariant(),
    };

    private static IEnumerable<Measurement<T>> PerOperation<T>(IoMetrics io, Func<OperationStats, T> value)
        where T : struct
    {
        foreach (var d in io.Devices)
        {
            foreach (var o in d.Operations)
            {
                yield return new Measurement<T>(value(o), new("device", d.Name), new("op", OperationLabel(o.Operation)));
            }
        }
    }

    private static IEnumerable<Measurement<long>> Buckets(IoMetrics io)
    {
        foreach (var d in io.Devices)
        {
            foreach (var o in d.Operations)
            {
                var buckets = o.Buckets;
                long cumulative = 0;
                for (var i = 0; i < buckets.Length; i++)
                {
                    cumulative += buckets[i];
                    yield return new Measurement<long>(cumulative, new("device", d.Name), new("op", OperationLabel(o.Operation)), new("le", BucketLabels[i]));
                }
            }
        }
    }
}
