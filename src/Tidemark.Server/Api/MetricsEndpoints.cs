using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Engine;
using Tidemark.Server.Events;
using Tidemark.Server.Metrics;

namespace Tidemark.Server.Api;

/// <summary>GET /metrics in the Prometheus text format (the token is required, as everywhere: Prometheus sends it with bearer_token_file).</summary>
public static class MetricsEndpoints
{
    public static void MapMetrics(this IEndpointRouteBuilder app)
    {
        app.MapGet("/metrics", (Pool pool, IoMetrics io, ExportRegistry exports, EventLog events, IEnumerable<IMetricsSource> sources) =>
            TypedResults.Text(PrometheusText.Render(pool, io, exports, events, sources), PrometheusText.ContentType))
            .WithTags("metrics")
            .ExcludeFromDescription();
    }
}
