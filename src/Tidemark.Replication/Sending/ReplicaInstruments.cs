using System.Diagnostics.Metrics;
using Tidemark.Api;

namespace Tidemark.Replication;

/// <summary>
/// The per-replica metrics as System.Diagnostics.Metrics instruments, observed from the replicas
/// (<see cref="ReplicaManager.List"/>) whenever a listener collects them: lag (the recovery point),
/// bytes sent, the last sync's size and compression, errors, retries, a running sync's progress and
/// ETA, each tagged volume, partner and state. The names are the /metrics families' names.
/// </summary>
public sealed class ReplicaInstruments : IDisposable
{
    public const string MeterName = "Tidemark.Replication";

    private readonly Func<IReadOnlyList<ReplicaDto>> _replicas;

    /// <param name="scope">Which server the meter belongs to (<see cref="Meter.Scope"/>): an exporter keeps its own server's.</param>
    public ReplicaInstruments(Func<IReadOnlyList<ReplicaDto>> replicas, object? scope = null)
    {
        _replicas = replicas;
        Meter = new Meter(new MeterOptions(MeterName) { Scope = scope });
        Gauge("tidemark_replica_lag_seconds", "Age of the newest snapshot the partner has of each replicated volume or group: the recovery point if this site failed now.", r => r.LagSeconds);
        Counter("tidemark_replica_sent_bytes_total", "Bytes of snapshot streams sent to the partner, all syncs.", r => r.BytesSent);
        Gauge("tidemark_replica_last_sync_sent_bytes", "Bytes on the wire of the last successful sync.", r => r.LastBytesSent);
        Gauge("tidemark_replica_last_sync_changed_bytes", "Bytes of changed ranges the last successful sync covered.", r => r.LastRangeBytes);
        Gauge("tidemark_replica_last_sync_duration_seconds", "Duration of the last successful sync.", r => r.LastDurationSeconds);
        Gauge("tidemark_replica_compression_ratio", "Changed bytes per byte on the wire in the last successful sync.", r => r.LastCompressionRatio);
        Counter("tidemark_replica_retries_total", "Attempts retried after a broken transfer, all syncs.", r => r.Retries);
        Gauge("tidemark_replica_failing", "1 while the replica's last sync failed (replica show says why), else 0.", r => r.LastError is null ? 0 : 1);
        Gauge("tidemark_replica_sync_remaining_bytes", "Bytes the running sync still has to cover.", r => r.Syncing is { Total: { } total } s ? Math.Max(0, total - s.Done) : null);
        Gauge("tidemark_replica_sync_eta_seconds", "Time the running sync needs at its current rate.", r => r.Syncing?.EtaSeconds);
    }

    /// <summary>This server's meter (a process may hold several servers: listeners pick theirs by instance, not by name).</summary>
    public Meter Meter { get; }

    public void Dispose() => Meter.Dispose();

    private void Gauge(string name, string help, Func<ReplicaDto, double?> value) =>
        Meter.CreateObservableGauge(name, () => Observe(value), description: help);

    private void Counter(string name, string help, Func<ReplicaDto, double?> value) =>
        Meter.CreateObservableCounter(name, () => Observe(value), description: help);

    private IEnumerable<Measurement<double>> Observe(Func<ReplicaDto, double?> value)
    {
        foreach (var replica in _replicas())
        {
            if (value(replica) is { } v)
            {
                yield return new Measurement<double>(v, new("volume", replica.Volume), new("partner", replica.Partner), new("state", replica.State));
            }
        }
    }
}
