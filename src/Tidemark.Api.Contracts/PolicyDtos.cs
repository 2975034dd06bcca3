namespace Tidemark.Api;

/// <summary>
/// A snapshot policy (the scheduled TimeMarks of the appliance Tidemark replaces): for one volume or
/// one group, snapshots on a schedule and/or after a amount of changed data, and retention of the
/// snapshots it made (keep the last N, and/or the newest in each of the last N hours, days, weeks,
/// months). It never touches snapshots it did not make.
/// </summary>
/// <param name="Schedule">"every 15m", "every 2h", "hourly", "hourly at :05", "daily 02:30", "weekly sun 02:30", "cron 0 */4 * * *", or null.</param>
/// <param name="TimeZone">IANA zone the schedule and the retention buckets are in (default UTC).</param>
/// <param name="ChangedBytes">Take a snapshot once this many bytes changed since the policy's last one.</param>
/// <param name="Hosts">Agents (hosts) quiesced around each snapshot (ADR 0015); none: crash-consistent.</param>
/// <param name="Fallback">When an agent cannot quiesce: "crash" (the default for policies: take it, labelled crash) or "skip".</param>
/// <param name="PreferConsistent">Retention keeps, for each hour/day/week/month it keeps, the most consistent snapshot of that period (application, then filesystem, then crash; the newest of equals) instead of the newest; keep-last still keeps the newest.</param>
/// <param name="Verify">After each snapshot, the first host's agent mounts a view of it and checks it (fsck -n, pg_amcheck); null: on when the policy names hosts.</param>
/// <param name="IndexMail">After each snapshot, every host whose agent declares a mail store on the volume builds its header index of the snapshot in the background (docs/adr/0012), so the first search is fast; null: on when the policy names hosts.</param>
public sealed record PolicyRequest(
    string Name,
    string? Volume = null,
    string? Group = null,
    string? Schedule = null,
    string? TimeZone = null,
    long? ChangedBytes = null,
    int? KeepLast = null,
    int? KeepHourly = null,
    int? KeepDaily = null,
    int? KeepWeekly = null,
    int? KeepMonthly = null,
    bool Enabled = true,
    IReadOnlyList<string>? Hosts = null,
    string? Fallback = null,
    bool? Verify = null,
    bool? PreferConsistent = null,
    bool? IndexMail = null);

/// <summary>One thing a policy did, or declined to do, and why.</summary>
public sealed record PolicyActivityDto(DateTimeOffset Time, string Action, string? Snapshot, string Message);

/// <summary>A policy with its state: when it runs next, what it owns, what went wrong last.</summary>
public sealed record PolicyDto(
    PolicyRequest Definition,
    DateTimeOffset? NextRun,
    DateTimeOffset? LastSnapshotAt,
    IReadOnlyList<string> Snapshots,
    string? LastError,
    IReadOnlyList<PolicyActivityDto> Activity);
