using System.Diagnostics.Metrics;

namespace Tidemark.Server.Metrics;

/// <summary>The NBD and iSCSI listeners' state in /metrics: whether they accept, what is open, what was refused.</summary>
public sealed class ListenerMetrics(IEnumerable<ProtocolListener?> listeners) : IMetricsSource
{
    private readonly ProtocolListener[] _listeners = [.. listeners.OfType<ProtocolListener>()];

    public void CreateInstruments(Meter meter)
    {
        if (_listeners.Length == 0)
        {
            return;
        }

        meter.CreateObservableGauge("tidemark_listener_up", () => Each(l => l.Accepting ? 1 : 0), description: "1 while the listener accepts connections, 0 while its accept loop fails (it backs off and retries) or is stopped.");
        meter.CreateObservableGauge("tidemark_listener_connections", Connections, description: "Open connections by phase: negotiating (handshake or login, no thread) or serving.");
        meter.CreateObservableCounter("tidemark_listener_accepted_total", () => Each(l => l.Admission.Accepted), description: "Connections accepted and admitted.");
        meter.CreateObservableCounter("tidemark_listener_refused_total", Refused, description: "Connections refused at accept, by the cap that was reached.");
        meter.CreateObservableCounter("tidemark_listener_handshake_timeouts_total", () => Each(l => l.Admission.HandshakeTimeouts), description: "Connections closed because they did not finish their handshake or login in time.");
        meter.CreateObservableCounter("tidemark_listener_login_failures_total", () => Each(l => l.Logins.Failures), description: "Logins refused for their credentials (iSCSI CHAP).");
        meter.CreateObservableCounter("tidemark_listener_login_throttled_total", () => Each(l => l.Logins.Delayed), description: "Connections made to wait because their address had failed logins.");
        meter.CreateObservableCounter("tidemark_listener_accept_failures_total", () => Each(l => l.AcceptFailures), description: "Accepts that failed on the server's side (out of descriptors or memory), each followed by a back-off.");
    }

    private IEnumerable<Measurement<long>> Each(Func<ProtocolListener, long> value) =>
        _listeners.Select(l => new Measurement<long>(value(l), Protocol(l)));

    private IEnumerable<Measurement<long>> Connections()
    {
        foreach (var l in _listeners)
        {
            var negotiating = l.Admission.Negotiating;
            yield return new Measurement<long>(negotiating, Protocol(l), new("phase", "negotiating"));
            yield return new Measurement<long>(Math.Max(0, l.Admission.Open - negotiating), Protocol(l), new("phase", "serving"));
        }
    }

    private IEnumerable<Measurement<long>> Refused()
    {
        foreach (var l in _listeners)
        {
            yield return new Measurement<long>(l.Admission.RefusedTotalCap, Protocol(l), new("reason", "max_connections"));
            yield return new Measurement<long>(l.Admission.RefusedSourceCap, Protocol(l), new("reason", "max_connections_per_source"));
        }
    }

    private static KeyValuePair<string, object?> Protocol(ProtocolListener listener) => new("protocol", listener.Protocol.ToLowerInvariant());
}
