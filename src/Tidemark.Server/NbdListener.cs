using System.IO.Pipelines;
using System.Net;
using Microsoft.Extensions.Logging;
using Tidemark.Protocols.Nbd;

namespace Tidemark.Server;

/// <summary>The NBD listener: one <see cref="NbdConnection"/> per client (see <see cref="ProtocolListener"/>).</summary>
public sealed class NbdListener(IPEndPoint endpoint, string? unixSocketPath, INbdExportCatalog catalog, NbdServerOptions options, ILogger<NbdListener> logger, ConnectionLimits? limits = null)
    : ProtocolListener(endpoint, unixSocketPath, "NBD", "--nbd", logger, limits)
{
    /// <summary>Where each connection is recorded while it runs, so a rollback can find (and end) it.</summary>
    public ClientSessions? Sessions { get; init; }

    protected override (Func<CancellationToken, Task> Run, Action? Abort) Open(IDuplexPipe transport, IPayloadFeature payload, ConnectionInfo info, IConnectionPhase phase)
    {
        var remote = info.RemoteEndPoint;
        var connection = new NbdConnection(transport, catalog, options, payload, phase);
        return (
            async stopping =>
            {
                // NBD has no way to ask a client to leave: ending a session closes it.
                using var attached = Sessions?.Attach(ExportRegistry.Nbd, remote, static () => null, () => connection.Export is { } e ? [e.Device] : [], null, () =>
                {
                    connection.Abort();
                    info.Abort();
                });
                var end = await connection.RunAsync(stopping);
                ServerLog.NbdSessionEnded(Logger, remote, connection.Export?.Name, end.Reason, end.Message);
            },
            connection.Abort);
    }
}
