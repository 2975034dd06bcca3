using System.Diagnostics.Metrics;
using Tidemark.Engine;
using Tidemark.Server.Events;

namespace Tidemark.Server.Metrics;

/// <summary>
/// The server's meter: every family of GET /metrics is an observable instrument on it (or on the
/// replication module's meter), read by the Prometheus exporter on each scrape. Created once when
/// the server starts; the instruments call into the pool, the export registry and the event log
/// only while a scrape collects them.
/// </summary>
public sealed class ServerMeter : IDisposable
{
    public const string MeterName = "Tidemark.Server";

    public ServerMeter(MetricsScope scope, Pool pool, IoMetrics io, ExportRegistry exports, EventLog events, IEnumerable<IMetricsSource> sources)
    {
        Meter = new Meter(new MeterOptions(MeterName) { Scope = scope });
        IoInstruments.Create(Meter, io);
        CreateVolumeInstruments(pool);
        CreatePoolInstruments(pool);
        Meter.CreateObservableGauge(
            "tidemark_exports",
            () => exports.List().GroupBy(e => (e.Protocol, e.State)).OrderBy(g => g.Key).Select(g => new Measurement<int>(g.Count(), Tag("protocol", g.Key.Protocol), Tag("state", g.Key.State))),
            description: "Exports by protocol and state.");
        Meter.CreateObservableGauge("tidemark_events_last_sequence", () => events.LastSequenceNumber, description: "Sequence number of the newest event in the event log.");
        CreateMemoryInstruments(pool);
        foreach (var source in sources)
        {
            source.CreateInstruments(Meter);
        }
    }

    public Meter Meter { get; }

    public void Dispose() => Meter.Dispose();

    private static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);

    private void CreateVolumeInstruments(Pool pool)
    {
        Meter.CreateObservableGauge(
            "tidemark_volume_size_bytes",
            () => pool.Volumes.Select(v => new Measurement<long>(v.SizeBytes, Tag("volume", v.Name), Tag("kind", v.Kind.ToString().ToLowerInvariant()))),
            description: "Virtual size of each volume and view.");
        Meter.CreateObservableGauge(
            "tidemark_volume_allocated_bytes",
            () => pool.Volumes.Where(v => v.AllocatedBytes is not null).Select(v => new Measurement<long>(v.AllocatedBytes!.Value, Tag("volume", v.Name))),
            description: "Bytes of each volume's live image backed by storage (shared with snapshots and sources included).");
        Meter.CreateObservableGauge(
            "tidemark_volume_snapshots",
            () => pool.Volumes.Select(v => new Measurement<int>(pool.ListSnapshots(v.Name).Count, Tag("volume", v.Name))),
            description: "Snapshots of each volume and view.");
    }

    private void CreatePoolInstruments(Pool pool)
    {
        Meter.CreateObservableGauge("tidemark_pool_capacity_bytes", () => pool.GetInfo().CapacityBytes, description: "Capacity of the pool's stores together.");
        Meter.CreateObservableGauge("tidemark_pool_used_bytes", () => pool.GetInfo().UsedBytes, description: "Space the pool has allocated (data of volumes and snapshots).");
        Meter.CreateObservableGauge("tidemark_pool_free_bytes", () => pool.GetInfo().FreeBytes, description: "Space the pool can still allocate.");
        Meter.CreateObservableGauge("tidemark_pool_stores", () => pool.GetInfo().Stores.Count, description: "Backing stores in the pool.");
        Meter.CreateObservableGauge("tidemark_pool_volumes", () => pool.GetInfo().Volumes, description: "Volumes and views in the pool.");
        Meter.CreateObservableGauge("tidemark_pool_snapshots", () => pool.GetInfo().Snapshots, description: "Snapshots in the pool.");
    }

    private void CreateMemoryInstruments(Pool pool)
    {
        Meter.CreateObservableGauge(
            "tidemark_process_resident_bytes",
            static () =>
            {
                using var process = System.Diagnostics.Process.GetCurrentProcess();
                return process.WorkingSet64;
            },
            description: "Resident memory of the server process.");
        Meter.CreateObservableGauge("tidemark_process_gc_heap_bytes", static () => GC.GetGCMemoryInfo().HeapSizeBytes, description: "Managed heap size after the last collection.");
        Meter.CreateObservableGauge("tidemark_process_gc_committed_bytes", static () => GC.GetGCMemoryInfo().TotalCommittedBytes, description: "Memory the garbage collector has committed for the managed heap.");
        Meter.CreateObservableGauge(
            "tidemark_engine_memory_bytes",
            IEnumerable<Measurement<long>> () =>
            {
                var memory = pool.GetMemoryUsage();
                return
                [
                    new(memory.MapCacheBytes, Tag("part", "map_cache")),
                    new(memory.RecycledPageBytes, Tag("part", "recycled_map_pages")),
                    new(memory.BlockCacheBytes, Tag("part", "metadata_block_cache")),
                    new(memory.MemtableBytes, Tag("part", "metadata_memtables")),
                    new(memory.TableReaderBytes, Tag("part", "metadata_table_readers")),
                ];
            },
            description: "Memory the engine holds, by part (map pages are in the managed heap, the metadata store's parts in the native heap).");
        Meter.CreateObservableGauge(
            "tidemark_process_native_heap_bytes",
            IEnumerable<Measurement<long>> () =>
            {
                var memory = pool.GetMemoryUsage();
                return
                [
                    new(memory.NativeHeapInUseBytes, Tag("state", "in_use")),
                    new(memory.NativeHeapFreeBytes, Tag("state", "free")),
                ];
            },
            description: "The C library's heap: bytes in use, and bytes freed but not yet given back to the system.");
    }
}
