using System.Text;

namespace Tidemark.Server.Metrics;

/// <summary>A component with its own metric families (jobs, policies, replicas): registered as a service, rendered into GET /metrics.</summary>
public interface IMetricsSource
{
    /// <summary>Appends whole families (HELP, TYPE, samples) with <see cref="PrometheusText"/>'s helpers.</summary>
    void RenderMetrics(StringBuilder builder);
}
