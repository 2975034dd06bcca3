using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tidemark.Protocols.Nbd;

namespace Tidemark.Server;

/// <summary>
/// The NBD listener: a plain socket accept loop, one <see cref="NbdConnection"/> per client whose
/// receive loop handles requests inline (DESIGN.md, data-path performance: no hand-off per request).
/// A plain loop rather than Kestrel's connection handlers until the two are measured side by side.
/// </summary>
public sealed class NbdListener : IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);

    private readonly IPEndPoint _endpoint;
    private readonly INbdExportCatalog _catalog;
    private readonly NbdServerOptions _options;
    private readonly ILogger<NbdListener> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<NbdConnection, Task> _sessions = new();
    private TcpListener? _listener;
    private Task? _acceptLoop;

    public NbdListener(IPEndPoint endpoint, INbdExportCatalog catalog, NbdServerOptions options, ILogger<NbdListener> logger)
    {
        _endpoint = endpoint;
        _catalog = catalog;
        _options = options;
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
            throw new IOException($"cannot listen for NBD on {_endpoint} ({ex.Message}); choose another address with --nbd or stop what uses it", ex);
        }

        _listener = listener;
        LocalEndpoint = (IPEndPoint)listener.LocalEndpoint;
        _logger.LogInformation("NBD listening on {Endpoint}", LocalEndpoint);
        _acceptLoop = Task.Run(AcceptLoopAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_listener is null)
        {
            return;
        }

        await _stopping.CancelAsync();
        _listener.Stop();
        if (_acceptLoop is not null)
        {
            await _acceptLoop;
        }

        foreach (var connection in _sessions.Keys)
        {
            connection.Abort();
        }

        try
        {
            await Task.WhenAll(_sessions.Values).WaitAsync(DrainTimeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            _logger.LogWarning("{Count} NBD sessions did not end within {Timeout}", _sessions.Count, DrainTimeout);
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
                _logger.LogDebug("NBD accept failed: {Message}", ex.Message);
                continue;
            }

            Accept(socket);
        }
    }

    private void Accept(Socket socket)
    {
        socket.NoDelay = true;
        var remote = socket.RemoteEndPoint;
        var stream = new NetworkStream(socket, ownsSocket: true);
        var transport = new SocketDuplexPipe(
            PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true)),
            PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true)));
        var connection = new NbdConnection(transport, _catalog, _options);
        _sessions[connection] = RunSessionAsync(connection, stream, remote);
    }

    private async Task RunSessionAsync(NbdConnection connection, NetworkStream stream, EndPoint? remote)
    {
        // Leave the accept loop at once; the session's own loop runs on the thread pool from here.
        await Task.Yield();
        try
        {
            var end = await connection.RunAsync(_stopping.Token);
            _logger.LogDebug("NBD session from {Remote} on {Export} ended: {Reason} {Message}", remote, connection.Export?.Name, end.Reason, end.Message);
        }
        catch (Exception ex)
        {
            _logger.LogError(ex, "NBD session from {Remote} failed", remote);
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
