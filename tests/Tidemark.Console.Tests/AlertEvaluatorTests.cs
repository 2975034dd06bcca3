using Microsoft.Extensions.Time.Testing;
using Tidemark.Api;
using Tidemark.Server.Agents;
using Tidemark.Server.Alerts;

namespace Tidemark.Console.Tests;

public sealed class AlertEvaluatorTests
{
    private const long MiB = 1L << 20;
    private static readonly DateTimeOffset Start = new(2026, 12, 6, 10, 0, 0, TimeSpan.Zero);

    private readonly FakeTimeProvider _time = new(Start);
    private readonly AlertEvaluator _alerts;

    public AlertEvaluatorTests() => _alerts = new AlertEvaluator(AlertThresholds.Default with { StalledJob = TimeSpan.FromMinutes(10), Rpo = TimeSpan.FromHours(1) }, _time);

    private static PoolDto Pool(long usedBytes, long capacityBytes = 1000 * MiB) =>
        new(Guid.Empty, "/data", capacityBytes, usedBytes, capacityBytes - usedBytes, [], 1, 0);

    private static ReplicaDto Replica(string volume, double? lagSeconds, string? every = null, string? error = null) =>
        new(volume, "dr", volume, null, null, lagSeconds, 0, 0, 0, null, 0, error, every);

    private static JobDto Job(string id, string state, long done, DateTimeOffset startedAt, DateTimeOffset? finishedAt = null, string? error = null) =>
        new(id, "pool.verify", null, state, done, null, "records", null, null, true, "alice", startedAt, finishedAt, error, null, null);

    private IReadOnlyList<AlertDto> Evaluate(PoolDto? pool = null, PolicyDto[]? policies = null, ReplicaDto[]? replicas = null, JobDto[]? jobs = null) =>
        _alerts.Evaluate(pool ?? Pool(0), policies ?? [], replicas ?? [], jobs ?? []);

    [Fact]
    public void Evaluate_pool_at_the_threshold_warns_and_below_it_does_not()
    {
        Assert.Empty(Evaluate(Pool(849 * MiB)));
        var alert = Assert.Single(Evaluate(Pool(850 * MiB)));
        Assert.Equal(("pool-full", "warning", "pool", "#/"), (alert.Kind, alert.Severity, alert.Subject, alert.Link));
        Assert.Contains("85% full (150 MiB free)", alert.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Evaluate_failed_policy_is_an_error_linked_to_its_volume()
    {
        var failed = new PolicyDto(new PolicyRequest("db-hourly", Volume: "db", Schedule: "hourly"), null, null, [], "the pool is offline", []);
        var fine = new PolicyDto(new PolicyRequest("web-hourly", Volume: "web", Schedule: "hourly"), null, null, [], null, []);
        var alert = Assert.Single(Evaluate(policies: [failed, fine]));
        Assert.Equal(("policy-failed", "error", "db", "#/volumes/db"), (alert.Kind, alert.Severity, alert.Subject, alert.Link));
        Assert.Contains("policy db-hourly failed: the pool is offline", alert.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Evaluate_replica_is_behind_past_twice_its_interval_or_the_configured_rpo()
    {
        // every 5m: one missed sync (10 min of lag) is tolerated, more is an alert.
        Assert.Empty(Evaluate(replicas: [Replica("db", lagSeconds: 600, every: "5m")]));
        var behind = Assert.Single(Evaluate(replicas: [Replica("db", lagSeconds: 601, every: "5m")]));
        Assert.Equal(("replica-behind-rpo", "#/volumes/db"), (behind.Kind, behind.Link));
        Assert.Contains("over its RPO of 10 min", behind.Message, StringComparison.Ordinal);

        // No interval: the configured RPO (1 h).
        Assert.Empty(Evaluate(replicas: [Replica("mail", lagSeconds: 3600)]));
        Assert.Equal("replica-behind-rpo", Assert.Single(Evaluate(replicas: [Replica("mail", lagSeconds: 3601)])).Kind);

        // Never synced (no lag known) is not behind; a failed sync is its own error.
        Assert.Empty(Evaluate(replicas: [Replica("new", lagSeconds: null)]));
        Assert.Equal("replica-failed", Assert.Single(Evaluate(replicas: [Replica("db", lagSeconds: 1, error: "connection refused")])).Kind);
    }

    [Fact]
    public void Evaluate_job_without_progress_for_the_configured_time_is_stalled_until_it_moves()
    {
        // Nothing done since it started: stalled once the threshold has passed since the start.
        var job = Job("a1", "running", done: 0, startedAt: Start);
        _time.Advance(TimeSpan.FromMinutes(9));
        Assert.Empty(Evaluate(jobs: [job]));
        _time.Advance(TimeSpan.FromMinutes(1));
        var stalled = Assert.Single(Evaluate(jobs: [job]));
        Assert.Equal(("job-stalled", "warning", "a1", "#/jobs?job=a1"), (stalled.Kind, stalled.Severity, stalled.Subject, stalled.Link));
        Assert.Contains("no progress for 10 min", stalled.Message, StringComparison.Ordinal);

        // It moves: no longer stalled, and the clock starts again from this look.
        Assert.Empty(Evaluate(jobs: [job with { Done = 5 }]));
        _time.Advance(TimeSpan.FromMinutes(9));
        Assert.Empty(Evaluate(jobs: [job with { Done = 5 }]));
        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal("job-stalled", Assert.Single(Evaluate(jobs: [job with { Done = 5 }])).Kind);

        // Finished: forgotten, and not an alert.
        Assert.Empty(Evaluate(jobs: [job with { State = "succeeded", Done = 5, FinishedAt = _time.GetUtcNow() }]));
    }

    [Fact]
    public void Evaluate_job_first_seen_with_progress_counts_from_that_look_not_from_its_start()
    {
        _time.Advance(TimeSpan.FromHours(1));
        var job = Job("b2", "running", done: 100, startedAt: Start);
        Assert.Empty(Evaluate(jobs: [job]));
        _time.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal("job-stalled", Assert.Single(Evaluate(jobs: [job])).Kind);
    }

    [Fact]
    public void Evaluate_failed_jobs_of_the_last_day_are_errors_newest_first_at_most_five_and_before_warnings()
    {
        _time.Advance(TimeSpan.FromDays(2));
        var now = _time.GetUtcNow();
        var old = Job("old", "failed", 0, Start, finishedAt: now - TimeSpan.FromDays(1) - TimeSpan.FromMinutes(1), error: "long ago");
        var recent = Enumerable.Range(0, 7).Select(i => Job($"f{i}", "failed", 0, Start, finishedAt: now - TimeSpan.FromMinutes(i), error: "disk")).ToArray();
        var alerts = Evaluate(pool: Pool(900 * MiB), jobs: [old, .. recent]);
        Assert.Equal(["f0", "f1", "f2", "f3", "f4"], alerts.Where(a => a.Kind == "job-failed").Select(a => a.Link.Split('=')[1]));
        Assert.Equal("pool-full", alerts[^1].Kind);
        Assert.All(alerts.Take(5), a => Assert.Equal("error", a.Severity));
    }

    [Fact]
    public void Evaluate_a_volumes_newest_verification_failed_is_an_error_naming_the_snapshot_and_how_to_verify_again()
    {
        var failed = new NewestVerification("mail", "daily-1", Guid.NewGuid(), new VerificationRecord("failed", "doveadm: mailbox INBOX corrupted", ["doveadm"], 3, "mailhost", Start.AddMinutes(-30)));
        var passed = new NewestVerification("db", "daily-1", Guid.NewGuid(), new VerificationRecord("passed", null, ["pg_amcheck"], 3, "dbhost", Start.AddMinutes(-30)));
        var notChecked = new NewestVerification("logs", "daily-1", Guid.NewGuid(), new VerificationRecord("not-checked", "no agent", [], 0, "dbhost", Start.AddMinutes(-30)));

        var alerts = _alerts.Evaluate(Pool(0), [], [], [], [failed, passed, notChecked]);

        var alert = Assert.Single(alerts);
        Assert.Equal(("verification-failed", "error", "mail@daily-1"), (alert.Kind, alert.Severity, alert.Subject));
        Assert.Contains("doveadm: mailbox INBOX corrupted", alert.Message, StringComparison.Ordinal);
        Assert.Contains("tidemark snapshot verify mail@daily-1 --host mailhost", alert.Message, StringComparison.Ordinal);
    }
}
