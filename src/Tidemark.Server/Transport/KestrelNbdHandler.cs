using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Tidemark.Protocols.Nbd;

namespace Tidemark.Server.Transport;

/// <summary>
/// NBD on Kestrel's socket transport (see <see cref="KestrelProtocolHandler"/>), kept for the
/// comparison of docs/adr/0010-protocol-transport.md until it is retired. WRITE payloads come through
/// Kestrel's pipe in both kestrel modes: the kestrel-splice mode's socket path read around Kestrel's
/// receive loop, and NBD no longer reads any socket itself.
/// </summary>
internal sealed class KestrelNbdHandler(INbdExportCatalog catalog, NbdServerOptions options, ConnectionLimits limits, bool exposeSocket, ClientSessions? sessions, ILogger<KestrelNbdHandler> logger)
    : KestrelProtocolHandler("NBD", limits, exposeSocket, logger)
{
    protected override (Func<CancellationToken, Task> Run, Action? Abort) Open(ConnectionContext connection, Socket? socket, IConnectionPhase phase)
    {
        var remote = connection.RemoteEndPoint;
        // The payload comes through Kestrel's pipe: reading its socket beside the pipe (the old
        // kestrel-splice path) broke the no-read-ahead rule (docs/adr/0010-protocol-transport.md).
        var nbd = new NbdConnection(connection.Transport, catalog, options, payload: null, phase);
        return (
            async stopping =>
            {
                // NBD has no way to ask a client to leave: ending a session closes it.
                using var attached = sessions?.Attach(ExportRegistry.Nbd, remote, static () => null, () => nbd.Export is { } e ? [e.Device] : [], null, () =>
                {
                    nbd.Abort();
                    connection.Abort();
                });
                var end = await nbd.RunAsync(stopping);
                Logger.LogDebug("NBD session from {Remote} on {Export} ended: {Reason} {Message}", remote, nbd.Export?.Name, end.Reason, end.Message);
            },
            nbd.Abort);
    }
}
