using System.Globalization;
using Tidemark.Api;
using Tidemark.Server.Agents;

namespace Tidemark.Server.Alerts;

/// <summary>What the alerts hold the server to; from the config file (ServerSettings.AlertStalledJob, AlertRpo).</summary>
/// <param name="NearlyFull">Used share of the pool from which the pool is reported nearly full.</param>
/// <param name="StalledJob">A running job whose progress has not moved for this long is reported stalled.</param>
/// <param name="Rpo">The lag a replica without a sync interval may reach; one with an interval may lag twice its interval.</param>
public sealed record AlertThresholds(double NearlyFull, TimeSpan StalledJob, TimeSpan Rpo)
{
    public static AlertThresholds Default { get; } = new(0.85, TimeSpan.FromMinutes(10), TimeSpan.FromHours(1));

    public static AlertThresholds From(ServerSettings settings) =>
        Default with
        {
            StalledJob = ServerSettings.Duration(settings.AlertStalledJob, "alert-stalled-job", AlertSettings.MaxSpan),
            Rpo = ServerSettings.Duration(settings.AlertRpo, "alert-rpo", AlertSettings.MaxSpan),
        };
}

/// <summary>
/// The one place that decides what is an alert (ADR 0016): the pool nearly full, a policy whose last
/// run failed, a replica whose last sync failed, is suspended or lags behind its RPO, a job that
/// failed in the last day or whose progress has stood still for <see cref="AlertThresholds.StalledJob"/>.
/// The dashboard, GET /api/v1/alerts and the console's live stream all ask it, so they cannot disagree.
/// It works on the API's DTOs, so it sees exactly what a client sees, and keeps one piece of state:
/// when each running job's progress last moved (progress has no timestamp of its own).
/// </summary>
public sealed class AlertEvaluator
{
    /// <summary>A failed job stays an alert this long (a later success of the same work does not clear it; time does).</summary>
    public static readonly TimeSpan FailedJobShown = TimeSpan.FromDays(1);

    /// <summary>At most this many failed-job alerts, the newest: a retry loop must not bury everything else.</summary>
    public const int MaxFailedJobAlerts = 5;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, (long Done, DateTimeOffset Since)> _progress = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly Func<AlertThresholds> _thresholds;

    public AlertEvaluator(AlertThresholds thresholds, TimeProvider time)
        : this(() => thresholds, time)
    {
    }

    /// <summary>Thresholds read at every evaluation (<see cref="AlertSettings.Current"/>), so a change through the API applies at the next look.</summary>
    public AlertEvaluator(Func<AlertThresholds> thresholds, TimeProvider time)
    {
        _thresholds = thresholds;
        _time = time;
    }

    public AlertThresholds Thresholds => _thresholds();

    /// <summary>The alerts for this state, errors first, then warnings, each group in a stable order.</summary>
    public IReadOnlyList<AlertDto> Evaluate(PoolDto pool, IEnumerable<PolicyDto> policies, IEnumerable<ReplicaDto> replicas, IReadOnlyList<JobDto> jobs, IEnumerable<NewestVerification>? verifications = null)
    {
        var now = _time.GetUtcNow();
        var thresholds = Thresholds;
        var alerts = new List<AlertDto>();
        if (pool.CapacityBytes > 0 && (double)pool.UsedBytes / pool.CapacityBytes >= thresholds.NearlyFull)
        {
            alerts.Add(new("pool-full", "warning", "pool", FormattableString.Invariant($"the pool is {Percent(pool.UsedBytes, pool.CapacityBytes)}% full ({pool.FreeBytes / (1024 * 1024)} MiB free); its alert is at {thresholds.NearlyFull * 100:0.##}%; add a store or set 'tidemark pool autogrow'"), "#/"));
        }

        foreach (var policy in policies.OrderBy(p => p.Definition.Name, StringComparer.Ordinal))
        {
            if (policy.LastError is { } error)
            {
                var target = policy.Definition.Volume ?? policy.Definition.Group ?? policy.Definition.Name;
                alerts.Add(new("policy-failed", "error", target, $"policy {policy.Definition.Name} failed: {error}", PolicyLink(policy)));
            }
        }

        // Only a volume's newest verdict counts: a failure followed by a passing verification of a
        // newer snapshot is history (the event log keeps it), not something to act on.
        foreach (var v in verifications ?? [])
        {
            if (v.Record.Verdict == VerifyResultDto.Failed)
            {
                var how = $"tidemark snapshot verify {v.Address} --host {v.Record.Host}";
                alerts.Add(new("verification-failed", "error", v.Address, $"the newest verified snapshot of {v.Volume}, {v.Snapshot}, failed its verification on host {v.Record.Host} {Span(now - v.Record.At)} ago: {v.Record.Reason}; look at the application's data on the volume, then verify a newer snapshot ('{how}')", $"#/volumes/{Uri.EscapeDataString(v.Volume)}"));
            }
        }

        foreach (var replica in replicas.OrderBy(r => r.Volume, StringComparer.Ordinal))
        {
            var link = $"#/volumes/{Uri.EscapeDataString(replica.Volume)}";
            if (replica.LastError is { } error)
            {
                alerts.Add(new("replica-failed", "error", replica.Volume, $"replication to {replica.Partner} failed: {error}", link));
            }
            else if (replica.State == "suspended")
            {
                alerts.Add(new("replica-suspended", "warning", replica.Volume, $"replication to {replica.Partner} is suspended: {replica.SuspendedReason ?? "no reason given"}", link));
            }

            if (replica.LagSeconds is { } lag && lag > RpoOf(replica).TotalSeconds)
            {
                alerts.Add(new("replica-behind-rpo", "warning", replica.Volume, $"the copy at {replica.Partner} is {Span(TimeSpan.FromSeconds(lag))} behind, over its RPO of {Span(RpoOf(replica))}", link));
            }
        }

        alerts.AddRange(JobAlerts(jobs, now));
        return [.. alerts.OrderBy(a => a.Severity == "error" ? 0 : 1)];
    }

    /// <summary>The lag a replica may reach: twice its sync interval (one missed sync), else the configured RPO.</summary>
    public TimeSpan RpoOf(ReplicaDto replica)
    {
        if (replica.Every is { } every)
        {
            try
            {
                return 2 * ServerSettings.Duration(every, "every");
            }
            catch (ArgumentException)
            {
                // An interval this server cannot read is not this evaluator's to report; hold it to the default.
            }
        }

        return Thresholds.Rpo;
    }

    private List<AlertDto> JobAlerts(IReadOnlyList<JobDto> jobs, DateTimeOffset now)
    {
        var alerts = new List<AlertDto>();
        lock (_lock)
        {
            var running = new HashSet<string>(StringComparer.Ordinal);
            foreach (var job in jobs.Where(j => j.State == "running"))
            {
                running.Add(job.Id);
                // Seen for the first time: a job that has done nothing has stood still since it started;
                // one that has done something may have moved just now (we cannot know), so count from now.
                if (!_progress.TryGetValue(job.Id, out var seen))
                {
                    seen = (job.Done, job.Done == 0 ? job.StartedAt : now);
                    _progress[job.Id] = seen;
                }
                else if (seen.Done != job.Done)
                {
                    seen = (job.Done, now);
                    _progress[job.Id] = seen;
                }

                var still = now - seen.Since;
                if (still >= Thresholds.StalledJob)
                {
                    alerts.Add(new("job-stalled", "warning", job.Id, $"job {job.Id} ({job.Kind}{(job.Subject is null ? "" : " " + job.Subject)}) has made no progress for {Span(still)} (at {job.Done} {job.Unit}); cancel it or look at the server's log", JobLink(job)));
                }
            }

            foreach (var gone in _progress.Keys.Where(id => !running.Contains(id)).ToList())
            {
                _progress.Remove(gone);
            }
        }

        foreach (var job in jobs.Where(j => j.State == "failed" && j.FinishedAt is { } at && now - at <= FailedJobShown)
            .OrderByDescending(j => j.FinishedAt).Take(MaxFailedJobAlerts))
        {
            alerts.Add(new("job-failed", "error", job.Subject ?? job.Kind, $"job {job.Id} ({job.Kind}) failed {Span(now - job.FinishedAt!.Value)} ago: {job.Error}", JobLink(job)));
        }

        return alerts;
    }

    private static string PolicyLink(PolicyDto policy) =>
        policy.Definition.Volume is { } volume ? $"#/volumes/{Uri.EscapeDataString(volume)}" : $"#/events?subject={Uri.EscapeDataString(policy.Definition.Group ?? policy.Definition.Name)}";

    private static string JobLink(JobDto job) => $"#/jobs?job={Uri.EscapeDataString(job.Id)}";

    private static string Percent(long part, long whole) => (100.0 * part / whole).ToString("0", CultureInfo.InvariantCulture);

    private static string Span(TimeSpan span) =>
        span.TotalSeconds < 120 ? FormattableString.Invariant($"{span.TotalSeconds:0} s")
        : span.TotalMinutes < 120 ? FormattableString.Invariant($"{span.TotalMinutes:0} min")
        : FormattableString.Invariant($"{span.TotalHours:0.#} h");
}
