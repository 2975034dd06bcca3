using System.Text;
using static Tidemark.Server.Metrics.PrometheusText;

namespace Tidemark.Server.Metrics;

/// <summary>The NBD and iSCSI listeners' state in /metrics: whether they accept, what is open, what was refused.</summary>
public sealed class ListenerMetrics(IEnumerable<ProtocolListener?> listeners) : IMetricsSource
{
    private readonly ProtocolListener[] _listeners = [.. listeners.OfType<ProtocolListener>()];

    public void RenderMetrics(StringBuilder builder)
    {
        if (_listeners.Length == 0)
        {
            return;
        }

        Family(builder, "tidemark_listener_up", "gauge", "1 while the listener accepts connections, 0 while its accept loop fails (it backs off and retries) or is stopped.");
        foreach (var l in _listeners)
        {
            Sample(builder, "tidemark_listener_up", [("protocol", Label(l))], l.Accepting ? 1 : 0);
        }

        Family(builder, "tidemark_listener_connections", "gauge", "Open connections by phase: negotiating (handshake or login, no thread) or serving.");
        foreach (var l in _listeners)
        {
            var negotiating = l.Admission.Negotiating;
            Sample(builder, "tidemark_listener_connections", [("protocol", Label(l)), ("phase", "negotiating")], negotiating);
            Sample(builder, "tidemark_listener_connections", [("protocol", Label(l)), ("phase", "serving")], Math.Max(0, l.Admission.Open - negotiating));
        }

        Family(builder, "tidemark_listener_accepted_total", "counter", "Connections accepted and admitted.");
        foreach (var l in _listeners)
        {
            Sample(builder, "tidemark_listener_accepted_total", [("protocol", Label(l))], l.Admission.Accepted);
        }

        Family(builder, "tidemark_listener_refused_total", "counter", "Connections refused at accept, by the cap that was reached.");
        foreach (var l in _listeners)
        {
            Sample(builder, "tidemark_listener_refused_total", [("protocol", Label(l)), ("reason", "max_connections")], l.Admission.RefusedTotalCap);
            Sample(builder, "tidemark_listener_refused_total", [("protocol", Label(l)), ("reason", "max_connections_per_source")], l.Admission.RefusedSourceCap);
        }

        Family(builder, "tidemark_listener_handshake_timeouts_total", "counter", "Connections closed because they did not finish their handshake or login in time.");
        foreach (var l in _listeners)
        {
            Sample(builder, "tidemark_listener_handshake_timeouts_total", [("protocol", Label(l))], l.Admission.HandshakeTimeouts);
        }

        Family(builder, "tidemark_listener_login_failures_total", "counter", "Logins refused for their credentials (iSCSI CHAP).");
        foreach (var l in _listeners)
        {
            Sample(builder, "tidemark_listener_login_failures_total", [("protocol", Label(l))], l.Logins.Failures);
        }

        Family(builder, "tidemark_listener_login_throttled_total", "counter", "Connections made to wait because their address had failed logins.");
        foreach (var l in _listeners)
        {
            Sample(builder, "tidemark_listener_login_throttled_total", [("protocol", Label(l))], l.Logins.Delayed);
        }

        Family(builder, "tidemark_listener_accept_failures_total", "counter", "Accepts that failed on the server's side (out of descriptors or memory), each followed by a back-off.");
        foreach (var l in _listeners)
        {
            Sample(builder, "tidemark_listener_accept_failures_total", [("protocol", Label(l))], l.AcceptFailures);
        }
    }

    private static string Label(ProtocolListener listener) => listener.Protocol.ToLowerInvariant();
}
