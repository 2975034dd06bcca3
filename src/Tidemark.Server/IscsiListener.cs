using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tidemark.Protocols.Iscsi;

namespace Tidemark.Server;

/// <summary>
/// The iSCSI portal: a plain socket accept loop, one <see cref="IscsiConnection"/> per client whose
/// receive loop handles commands inline, like <see cref="NbdListener"/> (DESIGN.md, data-path
/// performance). Each connection reports the address the client reached as its portal in
/// SendTargets, so a listener on 0.0.0.0 still answers with an address the initiator can use.
/// </summary>
public sealed class IscsiListener : IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);

    private readonly IPEndPoint _endpoint;
    private readonly IscsiTargetCatalog _catalog;
    private readonly IscsiLimits _limits;
    private readonly ILogger<IscsiListener> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<IscsiConnection, Task> _sessions = new();
    private TcpListener? _listener;
    private Task? _acceptLoop;

    public IscsiListener(IPEndPoint endpoint, IscsiTargetCatalog catalog, IscsiLimits limits, ILogger<IscsiListener> logger)
    {
        _endpoint = endpoint;
        _catalog = catalog;
        _limits = limits;
        _logger = logger;
    }

    /// <summary>The bound address (the real port when configured with port 0); null before start.</summary>
    public IPEndPoint? LocalEndpoint { get; private set; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var listener = new TcpListener(_endpoint);
        try
        {
            listener.Start();
        }
        catch (SocketException ex)
        {
            listener.Dispose();
            throw new IOException($"cannot listen for iSCSI on {_endpoint} ({ex.Message}); choose another address with --iscsi (or --iscsi off) or stop what uses it", ex);
        }

        _listener = listener;
        LocalEndpoint = (IPEndPoint)listener.LocalEndpoint;
        _logger.LogInformation("iSCSI listening on {Endpoint}", LocalEndpoint);
        _acceptLoop = Task.Run(AcceptLoopAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_listener is null)
        {
            return;
        }

        // Cancelling ends every connection's receive loop; the connections then complete their pipes.
        await _stopping.CancelAsync();
        _listener.Stop();
        if (_acceptLoop is not null)
        {
            await _acceptLoop;
        }

        try
        {
            await Task.WhenAll(_sessions.Values).WaitAsync(DrainTimeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            _logger.LogWarning("{Count} iSCSI connections did not end within {Timeout}", _sessions.Count, DrainTimeout);
        }

        _listener = null;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        var listener = _listener!;
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptSocketAsync(_stopping.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException ex)
            {
                if (_stopping.IsCancellationRequested)
                {
                    return;
                }

                // A client that reset before we accepted it: keep serving the others.
                _logger.LogDebug("iSCSI accept failed: {Message}", ex.Message);
                continue;
            }

            Accept(socket);
        }
    }

    private void Accept(Socket socket)
    {
        socket.NoDelay = true;
        var remote = socket.RemoteEndPoint;
        var portal = (socket.LocalEndPoint as IPEndPoint ?? LocalEndpoint)?.ToString();
        var stream = new NetworkStream(socket, ownsSocket: true);
        var transport = new SocketDuplexPipe(
            PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true)),
            PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true)));
        var connection = new IscsiConnection(transport, _catalog, _limits, portal);
        _sessions[connection] = RunSessionAsync(connection, stream, remote);
    }

    private async Task RunSessionAsync(IscsiConnection connection, NetworkStream stream, EndPoint? remote)
    {
        // Leave the accept loop at once; the connection's own loop runs on the thread pool from here.
        await Task.Yield();
        try
        {
            await connection.RunAsync(_stopping.Token);
            _logger.LogDebug(
                "iSCSI connection from {Remote} ({Initiator}) to {Target} ended: {Reason}",
                remote,
                connection.InitiatorName,
                connection.TargetName,
                connection.CloseReason ?? "logout");
        }
        catch (Exception ex)
        {
            _logger.LogError(ex, "iSCSI connection from {Remote} failed", remote);
        }
        finally
        {
            await stream.DisposeAsync();
            _sessions.TryRemove(connection, out _);
        }
    }

    private sealed class SocketDuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
