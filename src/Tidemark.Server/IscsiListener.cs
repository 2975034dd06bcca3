using System.IO.Pipelines;
using System.Net;
using Microsoft.Extensions.Logging;
using Tidemark.Protocols.Iscsi;

namespace Tidemark.Server;

/// <summary>
/// The iSCSI portal: one <see cref="IscsiConnection"/> per client (see <see cref="ProtocolListener"/>).
/// Each connection reports the address the client reached as its portal in SendTargets, so a
/// listener on 0.0.0.0 still answers with an address the initiator can use. Stopping cancels every
/// connection's receive loop through the token.
/// </summary>
public sealed class IscsiListener(IPEndPoint endpoint, IscsiTargetCatalog catalog, IscsiLimits limits, ILogger<IscsiListener> logger, ConnectionLimits? connectionLimits = null)
    : ProtocolListener(endpoint, null, "iSCSI", "--iscsi (or --iscsi off)", logger, connectionLimits)
{
    /// <summary>Where each session is recorded while it runs, so a rollback can find it and ask it to log out.</summary>
    public ClientSessions? Sessions { get; init; }

    protected override (Func<CancellationToken, Task> Run, Action? Abort) Open(IDuplexPipe transport, IPayloadFeature payload, ConnectionInfo info, IConnectionPhase phase)
    {
        var remote = info.RemoteEndPoint;
        var portal = (info.LocalEndPoint as IPEndPoint ?? LocalEndpoint)?.ToString();
        var connection = new IscsiConnection(transport, catalog, limits, portal, phase, payload);
        connection.AuthenticationFailure += failed =>
            Logins.Failed(ConnectionAdmission.SourceOf(remote), remote, failed.InitiatorName, failed.TargetName, failed.CloseReason ?? "authentication failure");
        return (
            async stopping =>
            {
                using var attached = Sessions?.Attach(
                    ExportRegistry.Iscsi,
                    remote,
                    () => connection.InitiatorName,
                    () => connection.Target?.Definition.Luns.Select(l => l.Device) ?? [],
                    connection.RequestLogoutAsync,
                    info.Abort);
                await connection.RunAsync(stopping);
                ServerLog.IscsiConnectionEnded(
                    Logger,
                    remote,
                    connection.InitiatorName,
                    connection.TargetName,
                    connection.CloseReason ?? "logout");
            },
            null);
    }
}
