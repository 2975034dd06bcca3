namespace Tidemark.Server.Agents;

/// <summary>A snapshot whose mail header index a host is to build; <see cref="SnapshotId"/> tells it from a later snapshot under the same name.</summary>
public sealed record MailIndexItem(string Host, string Volume, string Snapshot, Guid SnapshotId, string Actor);

/// <summary>
/// The post-snapshot index builds waiting per host (docs/adr/0012, "Index after a snapshot"): at most
/// one build runs on a host at a time; per host and volume only the newest snapshot waits (a burst of
/// snapshots indexes the newest: an older one is searched by reading its files, or indexed by its
/// first search); a waiting snapshot that is gone (or not the same snapshot any more) when its turn
/// comes is skipped. Knows nothing of views or agents: <paramref name="run"/> builds one index.
/// At the server's stop (<see cref="StopAsync"/>) nothing more starts, what waits is skipped and
/// what runs is cancelled (its token) and awaited.
/// </summary>
/// <param name="whyNot">null when the item is still to be indexed at its turn, else why it is skipped</param>
/// <param name="run">builds one index, until its token says the server stops; its failure is its own to report (the queue goes on)</param>
/// <param name="skipped">an item replaced by a newer one or skipped at its turn, and why</param>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A CancellationTokenSource without a timer holds no unmanaged resource; builds may still read its token while the server stops.")]
public sealed class MailIndexQueue(Func<MailIndexItem, string?> whyNot, Func<MailIndexItem, CancellationToken, Task> run, Action<MailIndexItem, string> skipped)
{
    private const string Stopping = "the server stopped before its turn";

    private readonly Lock _lock = new();
    private readonly Dictionary<string, HostQueue> _hosts = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stop = new();
    private bool _stopped;

    /// <summary>Whether <see cref="StopAsync"/> was called.</summary>
    public bool Stopped => Volatile.Read(ref _stopped);

    public void Enqueue(MailIndexItem item)
    {
        MailIndexItem? replaced = null;
        bool refused;
        lock (_lock)
        {
            refused = _stopped;
            if (!refused)
            {
                if (!_hosts.TryGetValue(item.Host, out var queue))
                {
                    queue = new HostQueue();
                    _hosts[item.Host] = queue;
                }

                var at = queue.Waiting.FindIndex(w => w.Volume == item.Volume);
                if (at >= 0)
                {
                    replaced = queue.Waiting[at];
                    queue.Waiting.RemoveAt(at);
                }

                queue.Waiting.Add(item);
                if (queue.Worker is null)
                {
                    // Under the lock: the worker takes it too before it looks, so it sees this item.
                    queue.Worker = Task.Run(() => DrainAsync(item.Host, queue));
                }
            }
        }

        if (refused)
        {
            skipped(item, Stopping);
        }
        else if (replaced is not null)
        {
            skipped(replaced, $"a newer snapshot of {item.Volume} ({item.Snapshot}) was taken before its turn; it is indexed instead");
        }
    }

    /// <summary>
    /// At the server's stop: nothing starts any more, every waiting item is skipped, the running
    /// builds' tokens are cancelled, and this waits for them to end (the caller bounds the wait).
    /// </summary>
    public async Task StopAsync()
    {
        List<MailIndexItem> dropped;
        lock (_lock)
        {
            _stopped = true;
            dropped = [.. _hosts.Values.SelectMany(q => q.Waiting)];
            foreach (var queue in _hosts.Values)
            {
                queue.Waiting.Clear();
            }
        }

        // Outside the lock: a build's cancellation runs its callbacks (the job's cancel) inline.
        await _stop.CancelAsync();
        foreach (var item in dropped)
        {
            skipped(item, Stopping);
        }

        await WhenIdleAsync();
    }

    /// <summary>Waits until no host has anything waiting or running (at shutdown, and in tests).</summary>
    public async Task WhenIdleAsync()
    {
        while (true)
        {
            Task[] workers;
            lock (_lock)
            {
                workers = [.. _hosts.Values.Select(q => q.Worker).OfType<Task>()];
            }

            if (workers.Length == 0)
            {
                return;
            }

            await Task.WhenAll(workers);
        }
    }

    private async Task DrainAsync(string host, HostQueue queue)
    {
        while (true)
        {
            MailIndexItem next;
            lock (_lock)
            {
                if (queue.Waiting.Count == 0)
                {
                    queue.Worker = null;
                    _hosts.Remove(host);
                    return;
                }

                next = queue.Waiting[0];
                queue.Waiting.RemoveAt(0);
            }

            try
            {
                if (whyNot(next) is { } reason)
                {
                    skipped(next, reason);
                    continue;
                }

                await run(next, _stop.Token);
            }
            catch (Exception)
            {
                // run reports its own failures; whatever escapes must not stop the host's queue.
            }
        }
    }

    private sealed class HostQueue
    {
        public List<MailIndexItem> Waiting { get; } = [];

        public Task? Worker { get; set; }
    }
}
