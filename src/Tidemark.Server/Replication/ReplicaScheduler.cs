using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Server.Jobs;

namespace Tidemark.Server.Replication;

/// <summary>Starts the automatic syncs of replicas created with an interval ("every 30s"), each as a job, never two at once for one volume.</summary>
public sealed class ReplicaScheduler : PeriodicService
{
    private readonly ReplicaManager _replicas;
    private readonly JobManager _jobs;
    private readonly TimeProvider _time;

    public ReplicaScheduler(ReplicaManager replicas, JobManager jobs, TimeProvider time, ILogger<ReplicaScheduler> logger)
        : base(time, logger)
    {
        _replicas = replicas;
        _jobs = jobs;
        _time = time;
    }

    protected override TimeSpan Interval => TimeSpan.FromSeconds(1);

    protected override string WorkName => "Replica scheduling";

    protected override void Tick()
    {
        var now = _time.GetUtcNow();
        foreach (var volume in _replicas.Due(now))
        {
            if (_jobs.List().Any(j => j.Kind == "replica.sync" && j.Subject == volume && j.State == JobState.Running))
            {
                continue;
            }

            _replicas.MarkAttempt(volume, now);
            _jobs.StartAsyncJob("replica.sync", volume, "server", cancellable: true, async progress =>
            {
                progress.Unit = "bytes";
                return await _replicas.SyncAsync(volume, progress, progress.Cancellation);
            });
        }
    }
}
