
using System.Globalization;
using System.Text;
using Tidemark.Engine;
using Tidemark.Server.Events;

namespace Tidemark.Server.Metrics;

/// <summary>
/// Renders the Prometheus text exposition format (version 0.0.4) for GET /metrics: per-device I/O
/// counters and latency histograms, per-volume size and snapshot counts, pool space, exports, the
/// event log position and the process's memory.
/// </summary>
public static class PrometheusText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public static string Render(Pool pool, IoMetrics io, ExportRegistry exports, EventLog events, IEnumerable<IMetricsSource>? more = null)
    {
        var b = new StringBuilder(16 * 1024);
        RenderIo(b, io);

        var volumes = pool.Volumes;
        Family(b, "tidemark_volume_size_bytes", "gauge", "Virtual size of each volume and view.");
        foreach (var v in volumes)
        {
            Sample(b, "tidemark_volume_size_bytes", [("volume", v.Name), ("kind", v.Kind.ToString().ToLowerInvariant())], v.SizeBytes);
        }

        Family(b, "tidemark_volume_allocated_bytes", "gauge", "Bytes of each volume's live image backed by storage (shared with snapshots and sources included).");
        foreach (var v in volumes)
        {
            if (v.AllocatedBytes is { } allocated)
            {
                Sample(b, "tidemark_volume_allocated_bytes", [("volume", v.Name)], allocated);
            }
        }

        Family(b, "tidemark_io_no_space_errors_total", "counter", "Writes refused because the pool had no space, per device.");
        foreach (var d in io.Devices)
        {
            Sample(b, "tidemark_io_no_space_errors_total", [("device", d.Name)], d.NoSpaceErrors);
        }

        Family(b, "tidemark_volume_snapshots", "gauge", "Snapshots of each volume and view.");
        foreach (var v in volumes)
        {
            Sample(b, "tidemark_volume_snapshots", [("volume", v.Name)], pool.ListSnapshots(v.Name).Count);
        }

        var info = pool.GetInfo();
        Gauge(b, "tidemark_pool_capacity_bytes", "Capacity of the pool's stores together.", info.CapacityBytes);
        Gauge(b, "tidemark_pool_used_bytes", "Space the pool has allocated (data of volumes and snapshots).", info.UsedBytes);
        Gauge(b, "tidemark_pool_free_bytes", "Space the pool can still allocate.", info.FreeBytes);
        Gauge(b, "tidemark_pool_stores", "Backing stores in the pool.", info.Stores.Count);
        Gauge(b, "tidemark_pool_volumes", "Volumes and views in the pool.", info.Volumes);
        Gauge(b, "tidemark_pool_snapshots", "Snapshots in the pool.", info.Snapshots);

        var list = exports.List();
        Family(b, "tidemark_exports", "gauge", "Exports by protocol and state.");
        foreach (var group in list.GroupBy(e => (e.Protocol, e.State)).OrderBy(g => g.Key))
        {
            Sample(b, "tidemark_exports", [("protocol", group.Key.Protocol), ("state", group.Key.State)], group.Count());
        }

        Gauge(b, "tidemark_events_last_sequence", "Sequence number of the newest event in the event log.", events.LastSequenceNumber);

        using (var process = System.Diagnostics.Process.GetCurrentProcess())
        {
            Gauge(b, "tidemark_process_resident_bytes", "Resident memory of the server process.", process.WorkingSet64);
        }

        var gc = GC.GetGCMemoryInfo();
        Gauge(b, "tidemark_process_gc_heap_bytes", "Managed heap size after the last collection.", gc.HeapSizeBytes);
        Gauge(b, "tidemark_process_gc_committed_bytes", "Memory the garbage collector has committed for the managed heap.", gc.TotalCommittedBytes);
        var memory = pool.GetMemoryUsage();
        Family(b, "tidemark_engine_memory_bytes", "gauge", "Memory the engine holds, by part (map pages are in the managed heap, the metadata store's parts in the native heap).");
        Sample(b, "tidemark_engine_memory_bytes", [("part", "map_cache")], memory.MapCacheBytes);
        Sample(b, "tidemark_engine_memory_bytes", [("part", "recycled_map_pages")], memory.RecycledPageBytes);
        Sample(b, "tidemark_engine_memory_bytes", [("part", "metadata_block_cache")], memory.BlockCacheBytes);
        Sample(b, "tidemark_engine_memory_bytes", [("part", "metadata_memtables")], memory.MemtableBytes);
        Sample(b, "tidemark_engine_memory_bytes", [("part", "metadata_table_readers")], memory.TableReaderBytes);
        Family(b, "tidemark_process_native_heap_bytes", "gauge", "The C library's heap: bytes in use, and bytes freed but not yet given back to the system.");
        Sample(b, "tidemark_process_native_heap_bytes", [("state", "in_use")], memory.NativeHeapInUseBytes);
        Sample(b, "tidemark_process_native_heap_bytes", [("state", "free")], memory.NativeHeapFreeBytes);
        foreach (var source in more ?? [])
        {
            source.RenderMetrics(b);
        }

        return b.ToString();
    }

    private static void RenderIo(StringBuilder b, IoMetrics io)
    {
        var devices = io.Devices;
        Family(b, "tidemark_io_operations_total", "counter", "I/O requests served from each exported device, by operation.");
        ForEach(devices, (d, o) => Sample(b, "tidemark_io_operations_total", [("device", d.Name), ("op", Op(o))], o.Count));
        Family(b, "tidemark_io_bytes_total", "counter", "Bytes read, written, unmapped or zeroed by completed requests.");
        ForEach(devices, (d, o) => Sample(b, "tidemark_io_bytes_total", [("device", d.Name), ("op", Op(o))], o.Bytes));
        Family(b, "tidemark_io_errors_total", "counter", "Requests that failed in the engine.");
        ForEach(devices, (d, o) => Sample(b, "tidemark_io_errors_total", [("device", d.Name), ("op", Op(o))], o.Errors));
        Family(b, "tidemark_io_latency_seconds", "histogram", "Time the engine took to serve each request (excludes the network).");
        ForEach(devices, (d, o) =>
        {
            var buckets = o.Buckets;
            long cumulative = 0;
            for (var i = 0; i < buckets.Length; i++)
            {
                cumulative += buckets[i];
                var le = i < OperationStats.BucketBounds.Length ? OperationStats.BucketBounds[i].ToString("R", CultureInfo.InvariantCulture) : "+Inf";
                Sample(b, "tidemark_io_latency_seconds_bucket", [("device", d.Name), ("op", Op(o)), ("le", le)], cumulative);
            }

            Sample(b, "tidemark_io_latency_seconds_sum", [("device", d.Name), ("op", Op(o))], o.SumSeconds);
            Sample(b, "tidemark_io_latency_seconds_count", [("device", d.Name), ("op", Op(o))], cumulative);
        });
    }

    private static void ForEach(IReadOnlyList<DeviceStats> devices, Action<DeviceStats, OperationStats> action)
    {
        foreach (var d in devices)
        {
            foreach (var o in d.Operations)
            {
                action(d, o);
            }
        }
    }

    private static string Op(OperationStats o) => o.Operation switch
    {
        IoOperation.Read => "read",
        IoOperation.Write => "write",
        IoOperation.Flush => "flush",
        IoOperation.Unmap => "unmap",
        IoOperation.WriteZeroes => "write_zeroes",
        IoOperation.CompareAndWrite => "compare_and_write",
        _ => o.Operation.ToString().ToLowerInvariant(),
    };

    public static void Family(StringBuilder b, string name, string type, string help)
    {
        b.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
        b.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
    }

    public static void Gauge(StringBuilder b, string name, string help, double value)
    {
        Family(b, name, "gauge", help);
        Sample(b, name, [], value);
    }

    public static void Sample(StringBuilder b, string name, IReadOnlyList<(string Key, string Value)> labels, double value)
    {
        b.Append(name);
        if (labels.Count > 0)
        {
            b.Append('{');
            for (var i = 0; i < labels.Count; i++)
            {
                if (i > 0)
                {
                    b.Append(',');
                }

                b.Append(labels[i].Key).Append("=\"");
                foreach (var c in labels[i].Value)
                {
                    _ = c switch
                    {
                        '\\' => b.Append("\\\\"),
                        '"' => b.Append("\\\""),
                        '\n' => b.Append("\\n"),
                        _ => b.Append(c),
                    };
                }

                b.Append('"');
            }

            b.Append('}');
        }

        b.Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
    }
}
