using System.Text;

namespace Tidemark.Server.WebConsole;

/// <summary>
/// The console's live updates (ADR 0016): one server-sent-events stream per open console page. Each
/// tick the stream computes its events (the alerts summary, the jobs) and sends only those whose
/// text changed since it last sent them; with nothing to send for <see cref="Heartbeat"/> it sends a
/// comment line, so a proxy or the browser sees the stream alive and a dead client is found by the
/// failed write. Streams are bounded: <see cref="MaxStreamsPerSession"/> per session (its tabs),
/// <see cref="MaxStreams"/> in all; signing out closes the session's streams at once, and a stream
/// also ends on the first tick after its session ended (idle, revoked token), without keeping the
/// session alive itself.
/// </summary>
public sealed class ConsoleUpdates
{
    /// <summary>
    /// Tabs of one session with live updates. A browser opens at most 6 HTTP/1.1 connections to one
    /// server, and each stream holds one: past 3, the console's own API calls would queue behind them.
    /// </summary>
    public const int MaxStreamsPerSession = 3;

    /// <summary>All open streams; each holds a connection and a tick's work.</summary>
    public const int MaxStreams = 256;

    /// <summary>Milliseconds the browser waits before reconnecting a stream the server ended (sent as "retry").</summary>
    public const int RetryMilliseconds = 5000;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, List<Lease>> _open = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private int _count;

    public ConsoleUpdates(TimeProvider time, TimeSpan? tick = null, TimeSpan? heartbeat = null)
    {
        _time = time;
        Tick = tick ?? TimeSpan.FromSeconds(1);
        Heartbeat = heartbeat ?? TimeSpan.FromSeconds(15);
    }

    /// <summary>How often a stream looks for changes: progress on the jobs page moves at this pace.</summary>
    public TimeSpan Tick { get; }

    /// <summary>Longest silence on a stream.</summary>
    public TimeSpan Heartbeat { get; }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _count;
            }
        }
    }

    /// <summary>A place for one more stream of <paramref name="sessionId"/>, or null with the reason it is refused.</summary>
    public Lease? TryOpen(string sessionId, out string? refusal)
    {
        lock (_lock)
        {
            _open.TryGetValue(sessionId, out var mine);
            if (mine is { Count: >= MaxStreamsPerSession })
            {
                refusal = $"this console session already has {MaxStreamsPerSession} pages with live updates open; close a tab (or reload it) to get live updates here";
                return null;
            }

            if (_count >= MaxStreams)
            {
                refusal = $"the server already carries {MaxStreams} live console streams; the page still works, reload it later for live updates";
                return null;
            }

            var lease = new Lease(this, sessionId);
            if (mine is null)
            {
                _open[sessionId] = mine = [];
            }

            mine.Add(lease);
            _count++;
            refusal = null;
            return lease;
        }
    }

    /// <summary>Ends every stream of <paramref name="sessionId"/> (the session signed out).</summary>
    public void CloseSession(string sessionId)
    {
        List<Lease>? leases;
        lock (_lock)
        {
            if (!_open.TryGetValue(sessionId, out leases))
            {
                return;
            }

            leases = [.. leases];
        }

        foreach (var lease in leases)
        {
            lease.Close();
        }
    }

    /// <summary>
    /// Runs one stream until the client goes, <paramref name="stopping"/> fires, the lease is closed or
    /// <paramref name="stillValid"/> says no. Each tick <paramref name="events"/> gives every event as
    /// (name, one-line data); <paramref name="write"/> sends text and flushes it. Disposes the lease.
    /// </summary>
    public async Task RunAsync(Lease lease, Func<IReadOnlyList<(string Name, string Data)>> events, Func<bool> stillValid, Func<string, CancellationToken, Task> write, CancellationToken stopping)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(lease.Closed, stopping);
        var cancel = linked.Token;
        var sent = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            await write($"retry: {RetryMilliseconds}\n\n", cancel);
            var lastWrite = _time.GetUtcNow();
            while (!cancel.IsCancellationRequested && stillValid())
            {
                var text = new StringBuilder();
                foreach (var (name, data) in events())
                {
                    if (!sent.TryGetValue(name, out var previous) || previous != data)
                    {
                        sent[name] = data;
                        text.Append("event: ").Append(name).Append('\n').Append("data: ").Append(data).Append("\n\n");
                    }
                }

                var now = _time.GetUtcNow();
                if (text.Length == 0 && now - lastWrite >= Heartbeat)
                {
                    text.Append(": heartbeat\n\n");
                }

                if (text.Length > 0)
                {
                    await write(text.ToString(), cancel);
                    lastWrite = now;
                }

                await Task.Delay(Tick, _time, cancel);
            }
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            // Signed out, the client left or the server stops: the stream just ends.
        }
        catch (IOException)
        {
            // The client's connection broke mid-write: nobody is left to tell.
        }
        finally
        {
            lease.Dispose();
        }
    }

    private void Release(Lease lease)
    {
        lock (_lock)
        {
            if (_open.TryGetValue(lease.SessionId, out var mine) && mine.Remove(lease))
            {
                _count--;
                if (mine.Count == 0)
                {
                    _open.Remove(lease.SessionId);
                }
            }
        }
    }

    /// <summary>One open stream's place; closing it ends the stream, disposing it frees the place.</summary>
    public sealed class Lease : IDisposable
    {
        private readonly ConsoleUpdates _owner;
        private readonly CancellationTokenSource _closed = new();

        internal Lease(ConsoleUpdates owner, string sessionId)
        {
            _owner = owner;
            SessionId = sessionId;
        }

        public string SessionId { get; }

        public CancellationToken Closed => _closed.Token;

        internal void Close()
        {
            try
            {
                _closed.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Ended on its own meanwhile.
            }
        }

        public void Dispose()
        {
            _owner.Release(this);
            _closed.Dispose();
        }
    }
}
