using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server;

/// <summary>
/// A plain socket accept loop for a block protocol (NBD, iSCSI): one connection object per client
/// whose own receive loop handles requests inline (DESIGN.md, data-path performance: no hand-off per
/// request). A plain loop rather than Kestrel's connection handlers until the two are measured side
/// by side. Stopping ends the accept loop, aborts every connection and waits for them to drain.
/// </summary>
public abstract class TcpProtocolListener : IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);

    private readonly IPEndPoint _endpoint;
    private readonly string _protocol;
    private readonly string _option;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Session, byte> _sessions = new();
    private TcpListener? _listener;
    private Task? _acceptLoop;

    protected TcpProtocolListener(IPEndPoint endpoint, string protocol, string option, ILogger logger)
    {
        _endpoint = endpoint;
        _protocol = protocol;
        _option = option;
        Logger = logger;
    }

    /// <summary>The bound address (the real port when configured with port 0); null before start.</summary>
    public IPEndPoint? LocalEndpoint { get; private set; }

    protected ILogger Logger { get; }

    /// <summary>
    /// Creates the protocol connection for an accepted client. <c>Run</c> serves it until it ends
    /// (and logs how); <c>Abort</c>, if any, ends it early when the server stops.
    /// </summary>
    protected abstract (Func<CancellationToken, Task> Run, Action? Abort) Open(IDuplexPipe transport, Socket socket);

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
            throw new IOException($"cannot listen for {_protocol} on {_endpoint} ({ex.Message}); choose another address with {_option} or stop what uses it", ex);
        }

        _listener = listener;
        LocalEndpoint = (IPEndPoint)listener.LocalEndpoint;
        Logger.LogInformation("{Protocol} listening on {Endpoint}", _protocol, LocalEndpoint);
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

        foreach (var session in _sessions.Keys)
        {
            session.Abort?.Invoke();
        }

        try
        {
            await Task.WhenAll(_sessions.Keys.Select(s => s.Running)).WaitAsync(DrainTimeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            Logger.LogWarning("{Count} {Protocol} connections did not end within {Timeout}", _sessions.Count, _protocol, DrainTimeout);
        }

        _listener = null;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        _stopping.Dispose();
        GC.SuppressFinalize(this);
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
                Logger.LogDebug("{Protocol} accept failed: {Message}", _protocol, ex.Message);
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
        var (run, abort) = Open(transport, socket);
        var session = new Session(abort);
        _sessions[session] = 0;
        session.Running = RunSessionAsync(session, run, stream, remote);
    }

    private async Task RunSessionAsync(Session session, Func<CancellationToken, Task> run, NetworkStream stream, EndPoint? remote)
    {
        // Leave the accept loop at once; the connection's own loop runs on the thread pool from here.
        await Task.Yield();
        try
        {
            await run(_stopping.Token);
        }
        catch (Exception ex)
        {
            Logger.LogError(ex, "{Protocol} connection from {Remote} failed", _protocol, remote);
        }
        finally
        {
            await stream.DisposeAsync();
            _sessions.TryRemove(session, out _);
        }
    }

    private sealed class Session(Action? abort)
    {
        public Action? Abort { get; } = abort;

        public Task Running { get; set; } = Task.CompletedTask;
    }

    private sealed class SocketDuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
