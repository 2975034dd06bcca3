using System.Text;
using Tidemark.Api;
using Tidemark.Replication;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Tests;

/// <summary>
/// The replica families of /metrics come from the module's System.Diagnostics.Metrics instruments
/// (unit: no server); names, HELP, TYPE, labels, order and values are the exposition the
/// hand-written renderer produced, byte for byte.
/// </summary>
public sealed class ReplicaMetricsTests
{
    private static readonly ReplicaDto Mail = new("mail", "dr", "mail", "repl-1", null, 12.5, 1000, 400, 800, 2, 1, null, LastCompressionRatio: 2, Syncing: new ReplicaSyncProgressDto(DateTimeOffset.UnixEpoch, 300, 1000, 30, 7.5));
    private static readonly ReplicaDto Db = new("db", "dr", "db", null, null, null, 0, 0, 0, null, 0, "link down", State: "suspended");

    [Fact]
    public void RenderMetrics_TwoReplicas_IsTheExpositionOfTheHandWrittenRenderer()
    {
        using var metrics = new ReplicaMetrics(() => [Mail, Db]);
        var text = new StringBuilder();

        metrics.RenderMetrics(text);

        Assert.Equal(Expected, text.ToString());
    }

    [Fact]
    public void RenderMetrics_TwoServersInOneProcess_EachRendersOnlyItsOwnReplicas()
    {
        using var first = new ReplicaMetrics(() => [Mail]);
        using var second = new ReplicaMetrics(() => [Db]);
        var text = new StringBuilder();

        second.RenderMetrics(text);

        Assert.DoesNotContain("volume=\"mail\"", text.ToString(), StringComparison.Ordinal);
        Assert.Contains("tidemark_replica_failing{volume=\"db\",partner=\"dr\",state=\"suspended\"} 1\n", text.ToString(), StringComparison.Ordinal);
        Assert.Single(text.ToString().Split('\n'), l => l == "# TYPE tidemark_replica_lag_seconds gauge");
    }

    [Fact]
    public void RenderMetrics_NoReplicas_StillNamesEveryFamily()
    {
        using var metrics = new ReplicaMetrics(() => []);
        var text = new StringBuilder();

        metrics.RenderMetrics(text);

        Assert.Equal(string.Concat(Expected.Split('\n').Where(l => l.StartsWith('#')).Select(l => l + "\n")), text.ToString());
    }

    private const string M = "{volume=\"mail\",partner=\"dr\",state=\"active\"}";
    private const string D = "{volume=\"db\",partner=\"dr\",state=\"suspended\"}";

    private static readonly string Expected = string.Concat(
        "# HELP tidemark_replica_lag_seconds Age of the newest snapshot the partner has of each replicated volume or group: the recovery point if this site failed now.\n",
        "# TYPE tidemark_replica_lag_seconds gauge\n",
        $"tidemark_replica_lag_seconds{M} 12.5\n",
        "# HELP tidemark_replica_sent_bytes_total Bytes of snapshot streams sent to the partner, all syncs.\n",
        "# TYPE tidemark_replica_sent_bytes_total counter\n",
        $"tidemark_replica_sent_bytes_total{M} 1000\n",
        $"tidemark_replica_sent_bytes_total{D} 0\n",
        "# HELP tidemark_replica_last_sync_sent_bytes Bytes on the wire of the last successful sync.\n",
        "# TYPE tidemark_replica_last_sync_sent_bytes gauge\n",
        $"tidemark_replica_last_sync_sent_bytes{M} 400\n",
        $"tidemark_replica_last_sync_sent_bytes{D} 0\n",
        "# HELP tidemark_replica_last_sync_changed_bytes Bytes of changed ranges the last successful sync covered.\n",
        "# TYPE tidemark_replica_last_sync_changed_bytes gauge\n",
        $"tidemark_replica_last_sync_changed_bytes{M} 800\n",
        $"tidemark_replica_last_sync_changed_bytes{D} 0\n",
        "# HELP tidemark_replica_last_sync_duration_seconds Duration of the last successful sync.\n",
        "# TYPE tidemark_replica_last_sync_duration_seconds gauge\n",
        $"tidemark_replica_last_sync_duration_seconds{M} 2\n",
        "# HELP tidemark_replica_compression_ratio Changed bytes per byte on the wire in the last successful sync.\n",
        "# TYPE tidemark_replica_compression_ratio gauge\n",
        $"tidemark_replica_compression_ratio{M} 2\n",
        "# HELP tidemark_replica_retries_total Attempts retried after a broken transfer, all syncs.\n",
        "# TYPE tidemark_replica_retries_total counter\n",
        $"tidemark_replica_retries_total{M} 1\n",
        $"tidemark_replica_retries_total{D} 0\n",
        "# HELP tidemark_replica_failing 1 while the replica's last sync failed (replica show says why), else 0.\n",
        "# TYPE tidemark_replica_failing gauge\n",
        $"tidemark_replica_failing{M} 0\n",
        $"tidemark_replica_failing{D} 1\n",
        "# HELP tidemark_replica_sync_remaining_bytes Bytes the running sync still has to cover.\n",
        "# TYPE tidemark_replica_sync_remaining_bytes gauge\n",
        $"tidemark_replica_sync_remaining_bytes{M} 700\n",
        "# HELP tidemark_replica_sync_eta_seconds Time the running sync needs at its current rate.\n",
        "# TYPE tidemark_replica_sync_eta_seconds gauge\n",
        $"tidemark_replica_sync_eta_seconds{M} 7.5\n");
}
