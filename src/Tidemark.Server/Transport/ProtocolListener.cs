using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading.Tasks.Sources;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server;

/// <summary>
/// A plain socket accept loop for a block protocol (NBD, iSCSI): one connection object per client
/// whose own receive loop handles requests inline (DESIGN.md, data-path performance: no hand-off per
/// request). A connection negotiates (handshake, login) without a thread under a deadline, then runs
/// its data phase on its own thread over blocking socket calls (<see cref="SocketInput"/> in, with
/// the payload feature, <see cref="SocketReplyWriter"/> out). This class and those two are the only
/// code that touches a connection's socket; a protocol sees the duplex pipe, the payload feature and
/// a <see cref="ConnectionInfo"/> (addresses, abort). Connections are capped in total and per source
/// (<see cref="ConnectionAdmission"/>); the accept loop survives every failure and reports its
/// state in /metrics (docs/adr/0006-connection-limits.md). Stopping ends the accept loop, aborts
/// every connection and waits for them to drain.
/// </summary>
public abstract class ProtocolListener : IHostedService, IAsyncDisposable
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);

    // Large enough that a 1 MiB WRITE or Data-Out burst arrives in a few system calls.
    private const int ReceiveBufferBytes = 256 * 1024;

    /// <summary>SO_RCVBUF of a connection in its data phase (the kernel caps it at net.core.rmem_max and doubles it).</summary>
    internal const int DataPhaseReceiveBufferBytes = 4 * 1024 * 1024;

    private readonly IPEndPoint _endpoint;
    private readonly string? _unixSocketPath;
    private readonly string _protocol;
    private readonly string _option;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<Session, byte> _sessions = new();
    private readonly List<Socket> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly ConnectionAdmission.RateLimitedCount _acceptFailureLog = new();
    private long _acceptFailures;
    private bool _acceptFailing;

    // The accept loops as /metrics reads them (a copy: the list changes while the server stops).
    private Task[] _running = [];

    /// <param name="endpoint">The TCP address to listen on.</param>
    /// <param name="unixSocketPath">A Unix-domain socket to listen on as well (mode 0600), or null.</param>
    /// <param name="protocol">The protocol's name in messages.</param>
    /// <param name="option">The setting that moves the listener, named in the error when its address is taken.</param>
    /// <param name="logger">Where connection failures go.</param>
    /// <param name="limits">Caps and deadlines for clients; the defaults when null.</param>
    protected ProtocolListener(IPEndPoint endpoint, string? unixSocketPath, string protocol, string option, ILogger logger, ConnectionLimits? limits = null)
    {
        _endpoint = endpoint;
        _unixSocketPath = unixSocketPath;
        _protocol = protocol;
        _option = option;
        Logger = logger;
        Admission = new ConnectionAdmission(limits ?? new ConnectionLimits(), protocol, logger);
        Logins = new ChapLoginThrottle(protocol, logger);
    }

    /// <summary>The bound address (the real port when configured with port 0); null before start.</summary>
    public IPEndPoint? LocalEndpoint { get; private set; }

    /// <summary>The Unix-domain socket listened on, or null.</summary>
    public string? UnixSocketPath => _listeners.Count > 1 ? _unixSocketPath : null;

    protected ILogger Logger { get; }

    /// <summary>The protocol's name ("NBD", "iSCSI").</summary>
    public string Protocol => _protocol;

    /// <summary>Open connections, caps and refusals.</summary>
    internal ConnectionAdmission Admission { get; }

    /// <summary>Failed logins per source, and the delay they earn the source's next connections.</summary>
    internal ChapLoginThrottle Logins { get; }

    /// <summary>True while every accept loop runs and the last accept succeeded.</summary>
    public bool Accepting => Volatile.Read(ref _running) is { Length: > 0 } loops && !Volatile.Read(ref _acceptFailing) && loops.All(t => !t.IsCompleted);

    /// <summary>Accepts that failed (other than a client's reset), each followed by a back-off.</summary>
    public long AcceptFailures => Interlocked.Read(ref _acceptFailures);

    /// <summary>How long a connection waits actively for its next request before it sleeps (see <see cref="SocketInput"/>).</summary>
    public TimeSpan ReceivePoll { get; init; }

    /// <summary>
    /// Creates the protocol connection for an accepted client. <c>Run</c> serves it until it ends
    /// (and logs how); <c>Abort</c>, if any, ends it early when the server stops. The connection
    /// tells <paramref name="phase"/> when its negotiation is over, and takes large payloads through
    /// <paramref name="payload"/>; <paramref name="info"/> gives its addresses and ends it.
    /// </summary>
    protected abstract (Func<CancellationToken, Task> Run, Action? Abort) Open(IDuplexPipe transport, IPayloadFeature payload, ConnectionInfo info, IConnectionPhase phase);

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
        TransportLog.Listening(Logger, _protocol, LocalEndpoint);
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

            TransportLog.ListeningUnix(Logger, _protocol, _unixSocketPath);
        }

        foreach (var listener in _listeners)
        {
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener), CancellationToken.None));
        }

        Volatile.Write(ref _running, [.. _acceptLoops]);

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
            session.Stop();
        }

        try
        {
            await Task.WhenAll(_sessions.Keys.Select(s => s.Running)).WaitAsync(DrainTimeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            TransportLog.DrainTimedOut(Logger, _sessions.Count, _protocol, DrainTimeout);
        }

        _listeners.Clear();
        _acceptLoops.Clear();
        Volatile.Write(ref _running, []);
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
        var failures = 0;
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stopping.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException && _stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionReset or SocketError.ConnectionAborted)
            {
                // A client that reset before we accepted it: keep serving the others.
                TransportLog.AcceptReset(Logger, _protocol, ex.Message);
                continue;
            }
            catch (Exception ex)
            {
                // Out of file descriptors, memory or anything else: the loop must survive it. Back
                // off (the condition is usually a flood that ends), say so, and report it in /metrics.
                failures++;
                Interlocked.Increment(ref _acceptFailures);
                Volatile.Write(ref _acceptFailing, true);
                var delay = TimeSpan.FromMilliseconds(Math.Min(1000, 10 << Math.Min(failures, 7)));
                if (_acceptFailureLog.ShouldLog(out var since))
                {
                    TransportLog.AcceptFailing(Logger, ex, _protocol, listener.LocalEndPoint, since, delay.TotalMilliseconds);
                }

                try
                {
                    await Task.Delay(delay, _stopping.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            if (failures > 0)
            {
                TransportLog.AcceptRecovered(Logger, _protocol, listener.LocalEndPoint);
                failures = 0;
                Volatile.Write(ref _acceptFailing, false);
            }

            try
            {
                Accept(socket);
            }
            catch (Exception ex)
            {
                // Setting one connection up failed (no memory for its buffers...): drop it, serve the rest.
                TransportLog.SetupFailed(Logger, ex, _protocol, SafeRemote(socket));
                socket.Dispose();
            }
        }
    }

    private static EndPoint? SafeRemote(Socket socket)
    {
        try
        {
            return socket.RemoteEndPoint;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return null;
        }
    }

    private void Accept(Socket socket)
    {
        var source = ConnectionAdmission.SourceOf(SafeRemote(socket));
        if (!Admission.TryAdmit(source))
        {
            // Refused at once: no buffer, no protocol state, a reset rather than a lingering close.
            try
            {
                socket.LingerState = new LingerOption(true, 0);
            }
            catch (SocketException)
            {
                // The client is gone already.
            }

            socket.Dispose();
            return;
        }

        Session? session = null;
        try
        {
            if (socket.AddressFamily != AddressFamily.Unix)
            {
                socket.NoDelay = true;
            }

            var remote = socket.RemoteEndPoint is UnixDomainSocketEndPoint ? (EndPoint)new UnixDomainSocketEndPoint(_unixSocketPath!) : socket.RemoteEndPoint;
            var input = new SocketInput(socket, ReceivePoll, ReceiveBufferBytes) { PayloadTimeout = Admission.Limits.PayloadTimeout };
            var sender = new SocketReplyWriter(socket);
            var transport = new SocketDuplexPipe(input, sender);
            session = new Session(this, socket, source, remote, input, sender);
            var (run, abort) = Open(transport, input, new ConnectionInfo(remote, socket.LocalEndPoint, session.ShutdownSocket), session);
            session.Abort = abort;
            _sessions[session] = 0;
            session.Start(run);
        }
        catch
        {
            // Nothing runs for this connection: give its slot and its poller registration back
            // (the caller closes the socket).
            if (session is not null)
            {
                _sessions.TryRemove(session, out _);
                session.Discard();
            }

            Admission.Release(source, stillNegotiating: true);
            throw;
        }
    }

    /// <summary>
    /// One accepted connection. It negotiates without a thread of its own (reads and sends wait on
    /// <see cref="SocketReadiness"/>, continuations run on the thread pool) under the handshake
    /// deadline; when the protocol enters its data phase it gets its own thread, blocked in recv
    /// between requests: the kernel wakes it directly when a request arrives, and the request is
    /// handled and answered on it (DESIGN.md, data-path performance).
    /// </summary>
    private sealed class Session : IConnectionPhase, IValueTaskSource, IDisposable
    {
        private const int Negotiating = 0;
        private const int Serving = 1;
        private const int Expired = 2;

        private readonly ProtocolListener _listener;
        private readonly Socket _socket;
        private readonly IPAddress? _source;
        private readonly EndPoint? _remote;
        private readonly SocketInput _input;
        private readonly SocketReplyWriter _sender;
        private readonly SocketReadiness.Registration? _negotiation;
        private Timer? _deadline;
        private int _phase;
        private int _onOwnThread;

        public Session(ProtocolListener listener, Socket socket, IPAddress? source, EndPoint? remote, SocketInput input, SocketReplyWriter sender)
        {
            _listener = listener;
            _socket = socket;
            _source = source;
            _remote = remote;
            _input = input;
            _sender = sender;
            _negotiation = SocketReadiness.Shared?.Register(socket);
            input.Negotiation = _negotiation;
            sender.Negotiation = _negotiation;
        }

        public Action? Abort { get; set; }

        public Task Running { get; private set; } = Task.CompletedTask;

        public void Start(Func<CancellationToken, Task> run)
        {
            _deadline = new Timer(static state => ((Session)state!).Expire(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            if (_negotiation is not null)
            {
                Running = Task.Run(() => RunAsync(run));
                return;
            }

            // No poller on this platform: the connection has a thread from the start, as before. Its
            // reads are blocking receives, so it runs on that thread to its end; the thread does not
            // wait for the task (an await that does go asynchronous continues where it completes).
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Running = done.Task;
            new Thread(() => RunAsync(run).ContinueWith(static (_, state) => ((TaskCompletionSource)state!).SetResult(), done, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default))
            {
                IsBackground = true,
                Name = $"{_listener._protocol} {_remote}",
            }.Start();
        }

        public void Dispose() => _deadline?.Dispose();

        /// <summary>Undoes the constructor for a connection that never started.</summary>
        public void Discard()
        {
            Dispose();
            _negotiation?.Dispose();
        }

        /// <summary>Ends the connection from any thread (the server stops, or the deadline passed).</summary>
        public void Stop()
        {
            Abort?.Invoke();
            ShutdownSocket();
        }

        /// <summary>Ends a blocked receive and a send blocked on a peer that stopped reading; the connection's loop then ends.</summary>
        public void ShutdownSocket()
        {
            try
            {
                // Ends a blocked receive and a send blocked on a peer that stopped reading.
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                // Already closed or reset.
            }
        }

        public ValueTask EnterDataPhaseAsync()
        {
            if (Interlocked.CompareExchange(ref _phase, Serving, Negotiating) == Negotiating)
            {
                _deadline?.Dispose();
                _listener.Admission.Negotiated();
            }

            var idle = _listener.Admission.Limits.IdleTimeout;
            if (idle > TimeSpan.Zero)
            {
                // SO_RCVTIMEO: a blocking recv that waits longer fails, which ends the connection.
                _socket.ReceiveTimeout = (int)Math.Min(int.MaxValue, idle.TotalMilliseconds);
            }

            // A fixed receive buffer (the kernel doubles it for its own bookkeeping) in place of the
            // autotuned one, which stayed near 1.3 MB under 1 MiB writes (ADR 0010, "session 22").
            _socket.ReceiveBufferSize = DataPhaseReceiveBufferBytes;

            var send = _listener.Admission.Limits.SendTimeout;
            if (send > TimeSpan.Zero)
            {
                // SO_SNDTIMEO: a blocking send (inline or on the reply sender) that moves no byte for
                // this long fails; SocketReplyWriter then ends the connection (see SendTimedOut there).
                _socket.SendTimeout = (int)Math.Min(int.MaxValue, send.TotalMilliseconds);
            }

            if (_negotiation is null)
            {
                return ValueTask.CompletedTask; // already on a thread of its own
            }

            _input.Negotiation = null;
            _sender.Negotiation = null;
            _negotiation.Dispose();
            return new ValueTask(this, 0);
        }

        public void StopReceivePoll() => _input.StopReceivePoll();

        // Pending until the continuation was handed to its thread: the await must not complete
        // inline on the thread-pool thread that finished the negotiation.
        ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => Volatile.Read(ref _onOwnThread) == 0 ? ValueTaskSourceStatus.Pending : ValueTaskSourceStatus.Succeeded;

        void IValueTaskSource.GetResult(short token)
        {
        }

        /// <summary>The await in <see cref="EnterDataPhaseAsync"/>: the rest of the connection runs on a new thread.</summary>
        void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
        {
            Volatile.Write(ref _onOwnThread, 1);
            var thread = new Thread(() => continuation(state))
            {
                IsBackground = true,
                Name = $"{_listener._protocol} {_remote}",
            };
            try
            {
                thread.Start();
            }
            catch (Exception ex) when (ex is OutOfMemoryException or ThreadStartException)
            {
                // The system has no thread to give (vm.max_map_count, memory): serve from the pool
                // rather than drop a client that logged in; the error says why it may be slow.
                TransportLog.NoThread(_listener.Logger, ex, _listener._protocol, _remote);
                ThreadPool.UnsafeQueueUserWorkItem(continuation, state, preferLocal: false);
            }
        }

        private void Expire()
        {
            if (Interlocked.CompareExchange(ref _phase, Expired, Negotiating) != Negotiating)
            {
                return;
            }

            _listener.Admission.HandshakeTimedOut();
            TransportLog.HandshakeTimedOut(_listener.Logger, _listener._protocol, _remote, _listener.Admission.Limits.HandshakeTimeout);
            Stop();
        }

        private async Task RunAsync(Func<CancellationToken, Task> run)
        {
            try
            {
                // An address with failed logins waits first (on a timer), before its deadline starts.
                var throttle = _listener.Logins.DelayFor(_source);
                if (throttle > TimeSpan.Zero)
                {
                    await Task.Delay(throttle, _listener._stopping.Token);
                }

                var timeout = _listener.Admission.Limits.HandshakeTimeout;
                if (timeout > TimeSpan.Zero)
                {
                    _deadline?.Change(timeout, Timeout.InfiniteTimeSpan);
                }

                // In the data phase everything the connection awaits on the socket completes
                // synchronously, so it runs on its thread; an await that does not (a TLS stream, a
                // device) continues on the thread pool.
                await run(_listener._stopping.Token);
            }
            catch (OperationCanceledException) when (_listener._stopping.IsCancellationRequested)
            {
                // The server stopped while the connection waited out its throttle.
            }
            catch (Exception ex)
            {
                TransportLog.ConnectionFailed(_listener.Logger, ex, _listener._protocol, _remote);
            }
            finally
            {
                Dispose();
                var stillNegotiating = Interlocked.Exchange(ref _phase, Serving) != Serving;

                // Out of the poller's set before the socket (and its descriptor number) is closed.
                _negotiation?.Dispose();

                // Normally completed by the connection already (which sent its last replies).
                _sender.Complete();
                _input.Complete();
                _socket.Dispose();
                _listener.Admission.Release(_source, stillNegotiating);
                _listener._sessions.TryRemove(this, out _);
            }
        }
    }

    private sealed class SocketDuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
