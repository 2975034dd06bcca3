using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;
using Tidemark.Api;
using Tidemark.Server.Metrics;

namespace Tidemark.Server.Replication;

/// <summary>
/// Renders the replication module's instruments (<see cref="ReplicaInstruments"/>) into GET /metrics:
/// a MeterListener collects this server's meter on each scrape, and every instrument becomes one
/// family (its name, its description as HELP, counter or gauge), its measurements the samples.
/// </summary>
public sealed class ReplicaMetrics : IMetricsSource, IDisposable
{
    private readonly ReplicaInstruments _instruments;
    private readonly MeterListener _listener = new();
    private readonly List<Instrument> _published = [];
    private readonly Lock _scrape = new();
    private Dictionary<Instrument, List<((string, string)[] Labels, double Value)>>? _collected;

    /// <param name="replicas">The replicas to observe (<see cref="ReplicaManager.List"/>).</param>
    public ReplicaMetrics(Func<IReadOnlyList<ReplicaDto>> replicas)
    {
        _instruments = new ReplicaInstruments(replicas);
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter, _instruments.Meter))
            {
                lock (_published)
                {
                    _published.Add(instrument);
                }

                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) =>
        {
            var labels = new (string, string)[tags.Length];
            for (var i = 0; i < tags.Length; i++)
            {
                labels[i] = (tags[i].Key, Convert.ToString(tags[i].Value, CultureInfo.InvariantCulture) ?? "");
            }

            if (_collected?.GetValueOrDefault(instrument) is { } samples)
            {
                samples.Add((labels, value));
            }
        });
        _listener.Start();
    }

    public void RenderMetrics(StringBuilder builder)
    {
        lock (_scrape)
        {
            List<Instrument> instruments;
            lock (_published)
            {
                instruments = [.. _published];
            }

            _collected = instruments.ToDictionary(i => i, _ => new List<((string, string)[], double)>());
            try
            {
                _listener.RecordObservableInstruments();
                foreach (var instrument in instruments)
                {
                    PrometheusText.Family(builder, instrument.Name, instrument is ObservableCounter<double> ? "counter" : "gauge", instrument.Description ?? "");
                    foreach (var (labels, value) in _collected[instrument])
                    {
                        PrometheusText.Sample(builder, instrument.Name, labels, value);
                    }
                }
            }
            finally
            {
                _collected = null;
            }
        }
    }

    public void Dispose()
    {
        _listener.Dispose();
        _instruments.Dispose();
    }
}
