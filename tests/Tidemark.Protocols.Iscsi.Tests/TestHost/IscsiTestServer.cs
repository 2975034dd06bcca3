using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests.TestHost;

/// <summary>
/// A small TCP host for real-client tests: TcpListener on 127.0.0.1 port 0, each accepted socket
/// wrapped as a pipe pair and handed to an <see cref="IscsiConnection"/>.
/// </summary>
public sealed class IscsiTestServer : IAsyncDisposable
{
    public const string TargetName = "iqn.2026-11.dev.tidemark:test";

    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _connections = [];
    private readonly Lock _lock = new();
    private readonly Task _acceptLoop;
    private readonly IscsiLimits? _limits;

    public IscsiTestServer(IscsiTargetCatalog catalog, IscsiLimits? limits = null)
    {
        Catalog = catalog;
        _limits = limits;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _acceptLoop = AcceptAsync();
    }

    public IscsiTargetCatalog Catalog { get; }

    public int Port { get; }

    public string Portal => $"127.0.0.1:{Port}";

    public List<string?> CloseReasons { get; } = [];

    public string Url(string target = TargetName, int lun = 0) => $"iscsi://{Portal}/{target}/{lun}";

    /// <summary>A catalogue with one target and one writable LUN 0 of the given size.</summary>
    public static IscsiTestServer WithMemoryDisk(long sizeBytes, out MemoryBlockDevice device, int blockBytes = 512)
    {
        device = new MemoryBlockDevice(sizeBytes, blockBytes);
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(TargetName, [new IscsiLunDefinition(0, device)]));
        return new IscsiTestServer(catalog);
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException)
            {
                return;
            }

            socket.NoDelay = true;
            lock (_lock)
            {
                _connections.Add(ServeAsync(socket));
            }
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        await using var stream = new NetworkStream(socket, ownsSocket: true);
        var pipe = new DuplexPipe(PipeReader.Create(stream), PipeWriter.Create(stream));
        var connection = new IscsiConnection(pipe, Catalog, _limits, Portal);
        await connection.RunAsync(_stop.Token);
        lock (_lock)
        {
            CloseReasons.Add(connection.CloseReason);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _acceptLoop;
        Task[] all;
        lock (_lock)
        {
            all = [.. _connections];
        }

        await Task.WhenAll(all).WaitAsync(TimeSpan.FromSeconds(10));
        _stop.Dispose();
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
