using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Tidemark.Protocols.Iscsi;

namespace Tidemark.Server.Transport;

/// <summary>The iSCSI portal on Kestrel's socket transport (see <see cref="KestrelProtocolHandler"/>).</summary>
internal sealed class KestrelIscsiHandler(IscsiTargetCatalog catalog, IscsiLimits limits, ConnectionLimits connectionLimits, ClientSessions? sessions, ILogger<KestrelIscsiHandler> logger)
    : KestrelProtocolHandler("iSCSI", connectionLimits, exposeSocket: false, logger)
{
    protected override (Func<CancellationToken, Task> Run, Action? Abort) Open(ConnectionContext connection, Socket? socket, IConnectionPhase phase)
    {
        var remote = connection.RemoteEndPoint;
        var portal = (connection.LocalEndPoint as IPEndPoint)?.ToString();
        var iscsi = new IscsiConnection(connection.Transport, catalog, limits, portal, phase);
        iscsi.AuthenticationFailure += failed =>
            Logins.Failed(ConnectionAdmission.SourceOf(remote), remote, failed.InitiatorName, failed.TargetName, failed.CloseReason ?? "authentication failure");
        return (
            async stopping =>
            {
                using var attached = sessions?.Attach(
                    ExportRegistry.Iscsi,
                    remote,
                    () => iscsi.InitiatorName,
                    () => iscsi.Target?.Definition.Luns.Select(l => l.Device) ?? [],
                    iscsi.RequestLogoutAsync,
                    () => connection.Abort());
                await iscsi.RunAsync(stopping);
                Logger.LogDebug(
                    "iSCSI connection from {Remote} ({Initiator}) to {Target} ended: {Reason}",
                    remote,
                    iscsi.InitiatorName,
                    iscsi.TargetName,
                    iscsi.CloseReason ?? "logout");
            },
            null);
    }
}
