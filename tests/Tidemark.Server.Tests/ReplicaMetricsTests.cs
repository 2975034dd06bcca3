using Tidemark.Api;
using Tidemark.Replication;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The replica families of /metrics come from the module's System.Diagnostics.Metrics instruments,
/// scraped through the server's exporter (no pool, no server): names, HELP, TYPE, labels and values
/// are those the hand-written renderer produced.
/// </summary>
public sealed class ReplicaMetricsTests
{
    private static readonly ReplicaDto Mail = new("mail", "dr", "mail", "repl-1", null, 12.5, 1000, 400, 800, 2, 1, null, LastCompressionRatio: 2, Syncing: new ReplicaSyncProgressDto(DateTimeOffset.UnixEpoch, 300, 1000, 30, 7.5));
    private static readonly ReplicaDto Db = new("db", "dr", "db", null, null, null, 0, 0, 0, null, 0, "link down", State: "suspended");

    private const string M = "{partner=\"dr\",state=\"active\",volume=\"mail\"}";
    private const string D = "{partner=\"dr\",state=\"suspended\",volume=\"db\"}";

    [Fact]
    public async Task Scrape_TwoReplicas_HasTheFamiliesOfTheHandWrittenRenderer()
    {
        await using var host = await MetricsHost.StartAsync();
        using var instruments = new ReplicaInstruments(() => [Mail, Db], host.Scope);

        var scrape = await host.ScrapeAsync();

        var expected = new Dictionary<string, double>
        {
            [$"tidemark_replica_lag_seconds{M}"] = 12.5,
            [$"tidemark_replica_sent_bytes_total{M}"] = 1000,
            [$"tidemark_replica_sent_bytes_total{D}"] = 0,
            [$"tidemark_replica_last_sync_sent_bytes{M}"] = 400,
            [$"tidemark_replica_last_sync_sent_bytes{D}"] = 0,
            [$"tidemark_replica_last_sync_changed_bytes{M}"] = 800,
            [$"tidemark_replica_last_sync_changed_bytes{D}"] = 0,
            [$"tidemark_replica_last_sync_duration_seconds{M}"] = 2,
            [$"tidemark_replica_compression_ratio{M}"] = 2,
            [$"tidemark_replica_retries_total{M}"] = 1,
            [$"tidemark_replica_retries_total{D}"] = 0,
            [$"tidemark_replica_failing{M}"] = 0,
            [$"tidemark_replica_failing{D}"] = 1,
            [$"tidemark_replica_sync_remaining_bytes{M}"] = 700,
            [$"tidemark_replica_sync_eta_seconds{M}"] = 7.5,
        };
        Assert.Equal(expected.OrderBy(e => e.Key), scrape.Samples.Where(s => s.Key.StartsWith("tidemark_replica_", StringComparison.Ordinal)).OrderBy(e => e.Key));
        Assert.Equal("counter", scrape.Types["tidemark_replica_sent_bytes_total"]);
        Assert.Equal("counter", scrape.Types["tidemark_replica_retries_total"]);
        Assert.Equal("gauge", scrape.Types["tidemark_replica_lag_seconds"]);
        Assert.Equal("Age of the newest snapshot the partner has of each replicated volume or group: the recovery point if this site failed now.", scrape.Help["tidemark_replica_lag_seconds"]);
    }

    [Fact]
    public async Task Scrape_TwoServersInOneProcess_EachShowsOnlyItsOwnReplicas()
    {
        await using var first = await MetricsHost.StartAsync();
        await using var second = await MetricsHost.StartAsync();
        using var mail = new ReplicaInstruments(() => [Mail], first.Scope);
        using var db = new ReplicaInstruments(() => [Db], second.Scope);

        var scrape = await second.ScrapeAsync();

        Assert.DoesNotContain(scrape.Samples, s => s.Key.Contains("volume=\"mail\"", StringComparison.Ordinal));
        Assert.Equal(1, scrape[$"tidemark_replica_failing{D}"]);
        Assert.Equal(0, (await first.ScrapeAsync())[$"tidemark_replica_failing{M}"]);
    }

    [Fact]
    public async Task Scrape_ReplicaDeleted_ItsSeriesGo()
    {
        await using var host = await MetricsHost.StartAsync();
        List<ReplicaDto> replicas = [Mail, Db];
        using var instruments = new ReplicaInstruments(() => [.. replicas], host.Scope);
        Assert.Equal(1, (await host.ScrapeAsync())[$"tidemark_replica_failing{D}"]);

        replicas.Remove(Db);
        var scrape = await host.ScrapeAsync();

        Assert.DoesNotContain(scrape.Samples, s => s.Key.Contains("volume=\"db\"", StringComparison.Ordinal));
        Assert.Equal(0, scrape[$"tidemark_replica_failing{M}"]);
    }
}
