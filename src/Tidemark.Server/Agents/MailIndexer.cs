using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Jobs;
using Tidemark.Server.Replication;
using EventLog = Tidemark.Server.Events.EventLog;

namespace Tidemark.Server.Agents;

/// <summary>
/// Builds the mail header index of a snapshot right after it is taken (docs/adr/0012, "Index after a
/// snapshot"), so that the first search of it is already indexed. After a snapshot taken through
/// agents (a policy's, or a manual one naming hosts), each of those hosts whose agent declares a mail
/// store on a snapshotted volume builds the index, in the background: the snapshot and the
/// application's resume never wait for it. Per host one build at a time, the newest snapshot of a
/// volume first (<see cref="MailIndexQueue"/>). A build is a <c>mail.index</c> job: a throwaway view of
/// the snapshot and an NBD export of it (as a recovery makes them), the agent's build, then the export
/// and the view deleted, also on failure or cancel. Each outcome is a <c>mail.index</c> event.
/// </summary>
public sealed partial class MailIndexer
{
    /// <summary>Every index view's name starts so: mailindex-VOLUME-STAMP-RANDOM.</summary>
    public const string ViewPrefix = "mailindex-";

    private readonly Pool _pool;
    private readonly ExportRegistry _exports;
    private readonly HostRegistry _hosts;
    private readonly AgentChannel _agents;
    private readonly EventLog _events;
    private readonly JobManager _jobs;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly MailIndexQueue _queue;

    public MailIndexer(AgentChannel agents, JobManager jobs)
    {
        _agents = agents;
        (_pool, _exports, _hosts, _events, _jobs, _logger, _time) = (agents.Pool, agents.Exports, agents.Hosts, agents.Events, jobs, agents.Logger, agents.Time);
        _queue = new MailIndexQueue(WhyNot, RunAsync, Skipped);
    }

    /// <summary>Reading every header of a large store through a view takes minutes (bench/recovery: 100 s and more at 200,000 messages).</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromMinutes(60);

    /// <summary>The question "do you hold a mail store on this volume?" costs the agent nothing.</summary>
    public TimeSpan ProbeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a cancelled build may take to take its mounts down on the host before the view goes anyway.</summary>
    public TimeSpan CancelGrace { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Queues the index builds of <paramref name="snapshots"/> on <paramref name="hostNames"/>; returns at once.</summary>
    public void Enqueue(IEnumerable<SnapshotInfo> snapshots, IReadOnlyList<string> hostNames, string actor)
    {
        foreach (var snapshot in snapshots)
        {
            foreach (var host in hostNames.Distinct(StringComparer.Ordinal))
            {
                _queue.Enqueue(new MailIndexItem(host, snapshot.Volume, snapshot.Address, snapshot.Id, actor));
            }
        }
    }

    /// <summary>Waits for the builds queued and running.</summary>
    public Task WhenIdleAsync() => _queue.WhenIdleAsync();

    /// <summary>
    /// At the server's stop, before the pool closes: nothing more is queued or started, waiting builds
    /// are skipped, running ones cancelled (the agent told, as for an administrator's cancel) and
    /// awaited, so each deletes its export and view. The caller bounds the wait; a view that outlives
    /// it is deleted at the next start (<see cref="DeleteLeftoverViews"/>).
    /// </summary>
    public Task StopAsync() => _queue.StopAsync();

    private string? WhyNot(MailIndexItem item)
    {
        try
        {
            return _pool.GetSnapshot(item.Snapshot).Id == item.SnapshotId ? null : "it was deleted before its turn (a newer snapshot has its name)";
        }
        catch (StorageException)
        {
            return "it was deleted before its turn";
        }
    }

    private void Skipped(MailIndexItem item, string reason)
    {
        AgentsLog.MailIndexSkipped(_logger, item.Snapshot, item.Host, reason);
        _events.Record("mail.index", item.Snapshot, item.Actor, $"not indexed on host {item.Host}: {reason}", "skipped");
    }

    private const string StoppedBeforeBuild = "the server stopped before its build began";

    private async Task RunAsync(MailIndexItem item, CancellationToken stopping)
    {
        // Asked first, without a view: most hosts of most policies hold no mail store, and for them
        // no view, export or job is made.
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        HostRecord host;
        SnapshotInfo snapshot;
        try
        {
            host = _hosts.Get(item.Host);
            snapshot = _pool.GetSnapshot(item.Snapshot);
            using var link = _agents.Open(host, ProbeTimeout);
            var probe = await link.IndexMailAsync(new AgentMailIndexRequest(id, snapshot.Address, snapshot.Volume, snapshot.CreatedAt, snapshot.Id, null), stopping);
            if (probe.Stores.Count == 0)
            {
                AgentsLog.NoMailStore(_logger, item.Host, snapshot.Volume);
                return;
            }
        }
        catch (StorageException ex)
        {
            Failed(item, ex.Message);
            return;
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
            Skipped(item, StoppedBeforeBuild);
            return;
        }

        if (stopping.IsCancellationRequested)
        {
            Skipped(item, StoppedBeforeBuild);
            return;
        }

        var job = _jobs.StartAsyncJob("mail.index", snapshot.Address, item.Actor, cancellable: true, async progress => await BuildAsync(id, host, snapshot, item.Actor, progress, progress.Cancellation));

        // A stop cancels the job as an administrator would: the agent is told, and the export and
        // view go before the pool closes.
        using var stop = stopping.Register(job.RequestCancel);
        try
        {
            await job.Task!;
        }
        catch (Exception ex) when (ex is StorageException or OperationCanceledException)
        {
            // BuildAsync recorded it.
        }
    }

    private async Task<object?> BuildAsync(string id, HostRecord host, SnapshotInfo snapshot, string actor, OperationProgress progress, CancellationToken ct)
    {
        progress.Unit = "steps";
        progress.SetTotal(3);

        // Named for what it is, so an operator (and the next start: DeleteLeftoverViews) knows it can
        // go; the random part keeps a guessing NBD client from finding the export.
        var stamp = _time.GetUtcNow().UtcDateTime.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        var view = $"{ViewPrefix}{(snapshot.Volume.Length > 20 ? snapshot.Volume[..20] : snapshot.Volume)}-{stamp}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        MailIndexResultDto result;
        try
        {
            _pool.CreateView(snapshot.Address, view);
            try
            {
                var export = _exports.Create(new CreateExportRequest(Target: view, Name: view));
                try
                {
                    var url = export.Url ?? throw new StorageException(StorageError.Unsupported, "this server has no NBD listener, so an agent cannot attach a view; start it with an NBD address");
                    progress.Advance(1);
                    using var link = _agents.Open(host, CallTimeout);
                    var call = link.IndexMailAsync(new AgentMailIndexRequest(id, snapshot.Address, snapshot.Volume, snapshot.CreatedAt, snapshot.Id, url), CancellationToken.None);

                    // A cancel is passed on to the agent and its answer still awaited (within a grace),
                    // so the view is deleted only after the host has let go of it.
                    using var grace = new CancellationTokenSource();
                    using (ct.Register(() =>
                    {
                        _ = CancelOnAgentAsync(host, id);
                        grace.CancelAfter(CancelGrace);
                    }))
                    {
                        result = await call.WaitAsync(grace.Token);
                    }

                    progress.Advance(1);
                }
                finally
                {
                    _exports.Delete(view);
                }
            }
            finally
            {
                try
                {
                    _pool.DeleteVolume(view);
                }
                catch (StorageException ex)
                {
                    AgentsLog.IndexViewNotDeleted(_logger, view, ex.Message);
                    _events.Record("volume.delete", view, "server", $"index view not deleted: {ex.Message}; 'tidemark view delete {view}'", "failed");
                }
            }
        }
        catch (Exception ex) when (ex is StorageException or OperationCanceledException)
        {
            var cancelled = ct.IsCancellationRequested;
            Failed(new MailIndexItem(host.Name, snapshot.Volume, snapshot.Address, snapshot.Id, actor), cancelled ? CancelReason() : ex.Message);
            if (cancelled)
            {
                throw new OperationCanceledException(CancelReason(), ex, ct);
            }

            throw;
        }

        progress.Advance(1);
        var stores = string.Join("; ", result.Stores);
        AgentsLog.MailIndexBuilt(_logger, snapshot.Address, host.Name, result.Seconds, stores);
        _events.Record("mail.index", snapshot.Address, actor, $"indexed on host {host.Name} in {result.Seconds:F1} s: {stores}" + (result.TeardownProblems.Count > 0 ? $"; teardown: {string.Join("; ", result.TeardownProblems)}" : string.Empty), "ok");
        return result;
    }

    private string CancelReason() => _queue.Stopped ? "cancelled: the server is stopping" : "cancelled at the administrator's request";

    private void Failed(MailIndexItem item, string reason)
    {
        AgentsLog.MailIndexFailed(_logger, item.Snapshot, item.Host, reason);
        _events.Record("mail.index", item.Snapshot, item.Actor, $"not indexed on host {item.Host}: {reason}; its first search reads every header instead, and indexes it", "failed");
    }

    private async Task CancelOnAgentAsync(HostRecord host, string id)
    {
        try
        {
            using var link = _agents.Open(host, TimeSpan.FromSeconds(30));
            await link.CancelRecoveryAsync(id, CancellationToken.None);
        }
        catch (StorageException ex)
        {
            AgentsLog.IndexCancelFailed(_logger, id, host.Name, ex.Message);
        }
    }

    /// <summary>
    /// At start: deletes the views (and their exports) that a server stopped mid-build left behind;
    /// only names of the full shape this class gives (mailindex-VOLUME-yyyyMMdd-HHmmss-12 hex).
    /// </summary>
    public IReadOnlyList<string> DeleteLeftoverViews()
    {
        var deleted = new List<string>();
        foreach (var volume in _pool.Volumes.Where(v => v.Kind == VolumeKind.View && LeftoverName().IsMatch(v.Name)).ToList())
        {
            try
            {
                _agents.DeleteViewWithExports(volume.Name);
                deleted.Add(volume.Name);
                _events.Record("volume.delete", volume.Name, "server", $"index view of {volume.Origin} left by a server stopped during an index build: deleted", "ok");
            }
            catch (StorageException ex)
            {
                AgentsLog.LeftoverIndexViewNotDeleted(_logger, volume.Name, ex.Message);
            }
        }

        return deleted;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^mailindex-.{1,20}-[0-9]{8}-[0-9]{6}-[0-9a-f]{12}$")]
    private static partial System.Text.RegularExpressions.Regex LeftoverName();
}
