using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;

namespace Tidemark.Protocols.Nbd.Tests.Interop;

/// <summary>
/// A minimal TCP host for real clients: 127.0.0.1 on a free port, one <see cref="NbdConnection"/> per
/// accepted socket over PipeReader/PipeWriter on its NetworkStream.
/// </summary>
internal sealed class TcpNbdHost : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<NbdConnection, Task> _sessions = new();
    private readonly ConcurrentQueue<NbdSessionEnd> _ends = new();
    private readonly Task _acceptLoop;

    /// <param name="catalog">The exports served.</param>
    /// <param name="options">Connection options.</param>
    public TcpNbdHost(NbdExportCatalog catalog, NbdServerOptions? options = null)
    {
        Catalog = catalog;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = AcceptLoopAsync(options);
    }

    public NbdExportCatalog Catalog { get; }

    public int Port { get; }

    public IReadOnlyCollection<NbdSessionEnd> Ends => _ends;

    public string Url(string exportName = "") => $"nbd://127.0.0.1:{Port}/{exportName}";

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        try
        {
            await _acceptLoop;
        }
        catch (OperationCanceledException)
        {
        }

        foreach (var connection in _sessions.Keys)
        {
            connection.Abort();
        }

        await Task.WhenAll(_sessions.Values).WaitAsync(TimeSpan.FromSeconds(10));
        _stopping.Dispose();

        // Real clients end sessions politely; anything else means we broke the protocol for them.
        var unclean = _ends.Where(e => e.Reason is NbdSessionEndReason.ProtocolViolation or NbdSessionEndReason.TruncatedFrame or NbdSessionEndReason.TransportError).ToArray();
        Assert.True(unclean.Length == 0, $"sessions ended uncleanly: {string.Join("; ", unclean)}");
    }

    private async Task AcceptLoopAsync(NbdServerOptions? options)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stopping.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            socket.NoDelay = true;
            var stream = new NetworkStream(socket, ownsSocket: true);
            var transport = new DuplexPipe(
                PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true)),
                PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true)));
            var connection = new NbdConnection(transport, Catalog, options);
            _sessions[connection] = Task.Run(async () =>
            {
                var end = await connection.RunAsync(_stopping.Token);
                _ends.Enqueue(end);
                await stream.DisposeAsync();
            });
        }
    }
}
