using Tidemark.Api;
using Tidemark.Server.Metrics;

namespace Tidemark.Server.Replication;

/// <summary>The per-replica families of /metrics, rendered from what <see cref="ReplicaManager.List"/> reports.</summary>
public sealed class ReplicaMetrics(ReplicaManager replicas) : IMetricsSource
{
    /// <summary>Per replica: lag (the recovery point), bytes sent, the last sync's size and compression, errors, retries, a running sync's progress and ETA.</summary>
    public void RenderMetrics(System.Text.StringBuilder builder)
    {
        var list = replicas.List();
        static (string, string)[] Labels(ReplicaDto r) => [("volume", r.Volume), ("partner", r.Partner), ("state", r.State)];
        void Each(string name, string type, string help, Func<ReplicaDto, double?> value)
        {
            PrometheusText.Family(builder, name, type, help);
            foreach (var replica in list)
            {
                if (value(replica) is { } v)
                {
                    PrometheusText.Sample(builder, name, Labels(replica), v);
                }
            }
        }

        Each("tidemark_replica_lag_seconds", "gauge", "Age of the newest snapshot the partner has of each replicated volume or group: the recovery point if this site failed now.", r => r.LagSeconds);
        Each("tidemark_replica_sent_bytes_total", "counter", "Bytes of snapshot streams sent to the partner, all syncs.", r => r.BytesSent);
        Each("tidemark_replica_last_sync_sent_bytes", "gauge", "Bytes on the wire of the last successful sync.", r => r.LastBytesSent);
        Each("tidemark_replica_last_sync_changed_bytes", "gauge", "Bytes of changed ranges the last successful sync covered.", r => r.LastRangeBytes);
        Each("tidemark_replica_last_sync_duration_seconds", "gauge", "Duration of the last successful sync.", r => r.LastDurationSeconds);
        Each("tidemark_replica_compression_ratio", "gauge", "Changed bytes per byte on the wire in the last successful sync.", r => r.LastCompressionRatio);
        Each("tidemark_replica_retries_total", "counter", "Attempts retried after a broken transfer, all syncs.", r => r.Retries);
        Each("tidemark_replica_failing", "gauge", "1 while the replica's last sync failed (replica show says why), else 0.", r => r.LastError is null ? 0 : 1);
        Each("tidemark_replica_sync_remaining_bytes", "gauge", "Bytes the running sync still has to cover.", r => r.Syncing is { Total: { } total } s ? Math.Max(0, total - s.Done) : null);
        Each("tidemark_replica_sync_eta_seconds", "gauge", "Time the running sync needs at its current rate.", r => r.Syncing?.EtaSeconds);
    }
}
