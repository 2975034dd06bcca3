using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;

namespace Tidemark.Server.Metrics;

/// <summary>
/// GET /metrics through OpenTelemetry's Prometheus exporter (docs/adr/0019-metrics-exporter.md):
/// the server's and the replication module's meters, only this server's instances of them
/// (<see cref="MetricsScope"/>), each family with room for every series a large server has, and no
/// response cache, so a scrape right after a change shows it.
/// </summary>
public static class MetricsExport
{
    public const string Path = "/metrics";

    /// <summary>Devices (exported volumes, views, snapshots) whose I/O series fit before the exporter folds the rest into one overflow series.</summary>
    public const int MaxDevices = 2048;

    /// <summary>Series of any other family (volumes, jobs, replicas) before the exporter folds the rest into one overflow series.</summary>
    public const int MaxSeriesPerFamily = 8192;

    private static readonly int Operations = Enum.GetValues<IoOperation>().Length;

    public static IServiceCollection AddTidemarkMetrics(this IServiceCollection services, MetricsScope scope)
    {
        services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(ServerMeter.MeterName, ReplicaInstruments.MeterName)
            .AddView(instrument => scope.Owns(instrument)
                ? new MetricStreamConfiguration { CardinalityLimit = CardinalityLimit(instrument.Name) }
                : MetricStreamConfiguration.Drop)
            .AddPrometheusExporter(o =>
            {
                o.ScrapeResponseCacheDurationMilliseconds = 0;
                // The families' names already end in _total where Prometheus wants it (and the latency
                // _bucket/_sum/_count triple must not get one): names stay what they were.
                o.DisableTotalNameSuffixForCounters = true;
                // Without them every series would carry otel_scope_name/otel_scope_version labels and a
                // target_info family would appear: the families and labels stay what they were.
                o.ScopeInfoEnabled = false;
                o.TargetInfoEnabled = false;
            }));
        return services;
    }

    /// <summary>Maps GET /metrics; the token middleware guards it like every other endpoint.</summary>
    public static void MapMetrics(this IEndpointRouteBuilder app) => app.MapPrometheusScrapingEndpoint(Path);

    internal static int CardinalityLimit(string instrument) => instrument switch
    {
        "tidemark_io_latency_seconds_bucket" => MaxDevices * Operations * (OperationStats.BucketBounds.Length + 1),
        _ when instrument.StartsWith("tidemark_io_", StringComparison.Ordinal) => MaxDevices * Operations,
        _ => MaxSeriesPerFamily,
    };
}
