using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Tidemark.Protocols.Nbd;

namespace Tidemark.Server;

/// <summary>The NBD listener: one <see cref="NbdConnection"/> per client (see <see cref="ProtocolListener"/>).</summary>
public sealed class NbdListener(IPEndPoint endpoint, string? unixSocketPath, INbdExportCatalog catalog, NbdServerOptions options, ILogger<NbdListener> logger, ConnectionLimits? limits = null)
    : ProtocolListener(endpoint, unixSocketPath, "NBD", "--nbd", logger, limits)
{
    protected override (Func<CancellationToken, Task> Run, Action? Abort) Open(IDuplexPipe transport, Socket socket, IConnectionPhase phase)
    {
        var remote = socket.RemoteEndPoint;
        var connection = new NbdConnection(transport, catalog, options, KernelPipe.IsSupported ? new SocketPayload(socket) : null, phase);
        return (
            async stopping =>
            {
                var end = await connection.RunAsync(stopping);
                Logger.LogDebug("NBD session from {Remote} on {Export} ended: {Reason} {Message}", remote, connection.Export?.Name, end.Reason, end.Message);
            },
            connection.Abort);
    }
}
