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
/// request). Each connection runs on its own thread over blocking socket calls
/// (<see cref="BlockingSocketStream"/> in, <see cref="SocketReplyWriter"/> out). Stopping ends the accept loop, aborts every
/// connection and waits for them to drain.
/// </summary>
public abstract class ProtocolListener : IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);

    // Large enough that a 1 MiB WRITE or Data-Out burst arrives in a few system calls.
    private const int ReceiveBufferBytes = 256 * 1024;

    private readonly IPEndPoint _endpoint;
    private readonly string? _unixSocketPath;
    private readonly string _protocol;
    private readonly string _option;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Session, byte> _sessions = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];

    /// <param name="endpoint">The TCP address to listen on.</param>
    /// <param name="unixSocketPath">A Unix-domain socket to listen on as well (mode 0600), or null.</param>
    /// <param name="protocol">The protocol's name in messages.</param>
    /// <param name="option">The setting that moves the listener, named in the error when its address is taken.</param>
    /// <param name="logger">Where connection failures go.</param>
    protected ProtocolListener(IPEndPoint endpoint, string? unixSocketPath, string protocol, string option, ILogger logger)
    {
        _endpoint = endpoint;
        _unixSocketPath = unixSocketPath;
        _protocol = protocol;
        _option = option;
        Logger = logger;
    }

    /// <summary>The bound address (the real port when configured with port 0); null before start.</summary>
    public IPEndPoint? LocalEndpoint { get; private set; }

    /// <summary>The Unix-domain socket listened on, or null.</summary>
    public string? UnixSocketPath => _listeners.Count > 1 ? _unixSocketPath : null;

    protected ILogger Logger { get; }

    /// <summary>How long a connection waits actively for its next request before it sleeps (see <see cref="BlockingSocketStream"/>).</summary>
    public TimeSpan ReceivePoll { get; init; }

    /// <summary>
    /// Creates the protocol connection for an accepted client. <c>Run</c> serves it until it ends
    /// (and logs how); <c>Abort</c>, if any, ends it early when the server stops.
    /// </summary>
    protected abstract (Func<CancellationToken, Task> Run, Action? Abort) Open(IDuplexPipe transport, Socket socket);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var tcp = new Socket(_endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            tcp.Bind(_endpoint);
            tcp.Listen(128);
        }
        catch (SocketException ex)
        {
            tcp.Dispose();
            throw new IOException($"cannot listen for {_protocol} on {_endpoint} ({ex.Message}); choose another address with {_option} or stop what uses it", ex);
        }

        _listeners.Add(tcp);
        LocalEndpoint = (IPEndPoint)tcp.LocalEndPoint!;
        Logger.LogInformation("{Protocol} listening on {Endpoint}", _protocol, LocalEndpoint);
        if (_unixSocketPath is not null)
        {
            try
            {
                _listeners.Add(ListenUnix(_unixSocketPath));
            }
            catch
            {
                tcp.Dispose();
                _listeners.Clear();
                throw;
            }

            Logger.LogInformation("{Protocol} listening on unix:{Path}", _protocol, _unixSocketPath);
        }

        foreach (var listener in _listeners)
        {
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener), CancellationToken.None));
        }

        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_listeners.Count == 0)
        {
            return;
        }

        await _stopping.CancelAsync();
        foreach (var listener in _listeners)
        {
            listener.Dispose();
        }

        await Task.WhenAll(_acceptLoops);
        if (UnixSocketPath is { } path)
        {
            File.Delete(path);
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

        _listeners.Clear();
        _acceptLoops.Clear();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None);
        _stopping.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// Binds a Unix-domain socket readable and writable by its owner only: whoever can connect reaches
    /// every export on it. A socket file left by a server that died is replaced; one that still
    /// answers belongs to a running server and is refused.
    /// </summary>
    private Socket ListenUnix(string path)
    {
        var full = Path.GetFullPath(path);
        if (File.Exists(full))
        {
            if ((File.GetAttributes(full) & FileAttributes.Directory) == 0 && IsListening(full))
            {
                throw new IOException($"cannot listen for {_protocol} on unix:{full}: another server answers there; choose another path or stop it");
            }

            File.Delete(full);
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            // Connecting needs write permission on the socket file, which the usual umask (022)
            // already withholds from others; 0600 also takes it from the group.
            socket.Bind(new UnixDomainSocketEndPoint(full));
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(full, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }

            socket.Listen(128);
            return socket;
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            throw new IOException($"cannot listen for {_protocol} on unix:{full} ({ex.Message}); choose another path", ex);
        }

        static bool IsListening(string path)
        {
            using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stopping.Token);
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
        if (socket.AddressFamily != AddressFamily.Unix)
        {
            socket.NoDelay = true;
        }

        var remote = socket.RemoteEndPoint is UnixDomainSocketEndPoint ? (EndPoint)new UnixDomainSocketEndPoint(_unixSocketPath!) : socket.RemoteEndPoint;
        var stream = new BlockingSocketStream(socket, ReceivePoll);
        var sender = new SocketReplyWriter(socket);
        var transport = new SocketDuplexPipe(
            PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: ReceiveBufferBytes, minimumReadSize: ReceiveBufferBytes / 4, leaveOpen: true)),
            sender);
        var (run, abort) = Open(transport, socket);
        var session = new Session(() =>
        {
            abort?.Invoke();
            stream.ShutdownBoth();
        });
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        session.Running = done.Task;
        _sessions[session] = 0;

        // One thread per connection, blocked in recv between requests: the kernel wakes it directly
        // when a request arrives, and the request is handled and answered on it (DESIGN.md,
        // data-path performance). Block storage has tens of connections, not thousands.
        var thread = new Thread(() => RunSession(session, run, stream, sender, remote, done))
        {
            IsBackground = true,
            Name = $"{_protocol} {remote}",
        };
        thread.Start();
    }

    private void RunSession(Session session, Func<CancellationToken, Task> run, BlockingSocketStream stream, SocketReplyWriter sender, EndPoint? remote, TaskCompletionSource done)
    {
        try
        {
            // Everything the connection awaits on the socket completes synchronously, so this blocks
            // only where it would have awaited a TLS stream or a device (which then runs elsewhere).
            run(_stopping.Token).GetAwaiter().GetResult();
        }
        catch (Exception ex)
        {
            Logger.LogError(ex, "{Protocol} connection from {Remote} failed", _protocol, remote);
        }
        finally
        {
            // Normally completed by the connection already (which sent its last replies).
            sender.Complete();
            stream.Dispose();
            _sessions.TryRemove(session, out _);
            done.SetResult();
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
