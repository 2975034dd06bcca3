using System.Diagnostics.Metrics;

namespace Tidemark.Server.Metrics;

/// <summary>
/// A component with its own metric families (jobs, verifications, listeners): registered as a
/// service, it creates observable instruments on the server's meter once at start; the exporter
/// reads them on each GET /metrics, so nothing is added to the component's own work.
/// </summary>
public interface IMetricsSource
{
    void CreateInstruments(Meter meter);
}
