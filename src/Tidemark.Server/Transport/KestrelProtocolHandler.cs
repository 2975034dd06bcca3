using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server.Transport;

/// <summary>
/// Hosts a block protocol (NBD, iSCSI) on Kestrel's socket transport instead of
/// <see cref="ProtocolListener"/>: the same protocol connection runs over
/// <see cref="ConnectionContext.Transport"/>. For measurement only (issue 18 §1,
/// docs/adr/0010-protocol-transport.md), selected with `serve --protocol-transport kestrel`.
/// </summary>
/// <remarks>
/// Kept from the hand-written transport: the total and per-source caps (<see cref="ConnectionAdmission"/>),
/// the failed-login delay and the handshake deadline. Not kept: the idle timeout (SO_RCVTIMEO does
/// not apply to Kestrel's asynchronous receives), receive polling, the thread per connection in the
/// data phase (Kestrel runs the connection on its I/O thread with inline scheduling) and the
/// listener's /metrics families.
/// </remarks>
internal abstract class KestrelProtocolHandler : ConnectionHandler
{
    protected KestrelProtocolHandler(string protocol, ConnectionLimits limits, bool exposeSocket, ILogger logger)
    {
        Protocol = protocol;
        ExposeSocket = exposeSocket;
        Logger = logger;
        Admission = new ConnectionAdmission(limits, protocol, logger);
        Logins = new ChapLoginThrottle(protocol, logger);
    }

    /// <summary>The protocol's name ("NBD", "iSCSI").</summary>
    public string Protocol { get; }

    /// <summary>Whether the protocol may read the socket itself (Kestrel's <see cref="IConnectionSocketFeature"/>).</summary>
    public bool ExposeSocket { get; }

    /// <summary>Open connections, caps and refusals.</summary>
    internal ConnectionAdmission Admission { get; }

    /// <summary>Failed logins per source, and the delay they earn the source's next connections.</summary>
    internal ChapLoginThrottle Logins { get; }

    protected ILogger Logger { get; }

    /// <summary>
    /// Creates the protocol connection for an admitted client. <c>Run</c> serves it until it ends;
    /// <c>Abort</c>, if any, ends it early (the deadline passed, the server stops).
    /// <paramref name="socket"/> is Kestrel's socket when <see cref="ExposeSocket"/> is set and the
    /// transport offers it, else null.
    /// </summary>
    protected abstract (Func<CancellationToken, Task> Run, Action? Abort) Open(ConnectionContext connection, Socket? socket, IConnectionPhase phase);

    public override async Task OnConnectedAsync(ConnectionContext connection)
    {
        var source = ConnectionAdmission.SourceOf(connection.RemoteEndPoint);
        if (!Admission.TryAdmit(source))
        {
            connection.Abort(new ConnectionAbortedException($"{Protocol} connection cap reached"));
            return;
        }

        var socket = ExposeSocket ? connection.Features.Get<IConnectionSocketFeature>()?.Socket : null;

        // Kestrel asks open connections to close when the server stops; a block protocol has no
        // graceful close of its own, so that ends the session.
        var closing = connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.ConnectionClosedRequested ?? CancellationToken.None;
        using var phase = new Phase(this, connection);
        try
        {
            var (run, abort) = Open(connection, socket, phase);
            phase.ProtocolAbort = abort;
            using var stop = closing.UnsafeRegister(static state => ((Phase)state!).Stop(), phase);
            var throttle = Logins.DelayFor(source);
            if (throttle > TimeSpan.Zero)
            {
                await Task.Delay(throttle, closing);
            }

            phase.StartDeadline();
            await run(closing);
        }
        catch (OperationCanceledException) when (closing.IsCancellationRequested)
        {
            // The server stopped while the connection waited out its throttle.
        }
        catch (Exception ex)
        {
            Logger.LogError(ex, "{Protocol} connection from {Remote} failed", Protocol, connection.RemoteEndPoint);
        }
        finally
        {
            Admission.Release(source, phase.EndNegotiation());
        }
    }

    /// <summary>The negotiation phase of one connection: its deadline, and the switch to the data phase.</summary>
    private sealed class Phase(KestrelProtocolHandler handler, ConnectionContext connection) : IConnectionPhase, IDisposable
    {
        private const int Negotiating = 0;
        private const int Serving = 1;
        private const int Expired = 2;

        private int _phase;
        private Timer? _deadline;

        public Action? ProtocolAbort { get; set; }

        public void StartDeadline()
        {
            var timeout = handler.Admission.Limits.HandshakeTimeout;
            if (timeout > TimeSpan.Zero)
            {
                _deadline = new Timer(static state => ((Phase)state!).Expire(), this, timeout, Timeout.InfiniteTimeSpan);
            }
        }

        public ValueTask EnterDataPhaseAsync()
        {
            if (Interlocked.CompareExchange(ref _phase, Serving, Negotiating) == Negotiating)
            {
                _deadline?.Dispose();
                handler.Admission.Negotiated();
            }

            // No thread of its own: the data phase runs where Kestrel schedules the pipe's continuations.
            return ValueTask.CompletedTask;
        }

        /// <summary>Marks the connection over; true when it never finished negotiating.</summary>
        public bool EndNegotiation() => Interlocked.Exchange(ref _phase, Serving) != Serving;

        public void Stop()
        {
            ProtocolAbort?.Invoke();
            connection.Abort(new ConnectionAbortedException($"{handler.Protocol} connection closed by the server"));
        }

        public void Dispose() => _deadline?.Dispose();

        private void Expire()
        {
            if (Interlocked.CompareExchange(ref _phase, Expired, Negotiating) != Negotiating)
            {
                return;
            }

            handler.Admission.HandshakeTimedOut();
            handler.Logger.LogDebug("{Protocol} connection from {Remote} did not finish its handshake within {Timeout}; closed", handler.Protocol, connection.RemoteEndPoint, handler.Admission.Limits.HandshakeTimeout);
            Stop();
        }
    }
}
