namespace Tidemark.Api;

/// <summary>
/// Something an administrator should look at now (GET /api/v1/alerts; the console's dashboard shows
/// the same list). Computed from the server's state when asked, never stored.
/// </summary>
/// <param name="Kind">"pool-full", "policy-failed", "replica-failed", "replica-behind-rpo", "replica-suspended", "job-stalled" or "job-failed".</param>
/// <param name="Severity">"warning" or "error".</param>
/// <param name="Subject">What it is about: "pool", a volume, a group, or a job id.</param>
/// <param name="Link">Where the console shows the thing, as a path of its page ("#/volumes/db", "#/jobs").</param>
public sealed record AlertDto(string Kind, string Severity, string Subject, string Message, string Link);

/// <summary>
/// The thresholds alerts are raised at (GET/PUT /api/v1/alerts/thresholds, `tidemark alerts thresholds`).
/// </summary>
/// <param name="PoolFullPercent">The pool is reported nearly full at this share used (1-100 %).</param>
/// <param name="StalledJob">A running job whose progress has not moved for this long is reported stalled ("10m"; 1s to 24h).</param>
/// <param name="Rpo">The lag a replica without a sync interval may reach ("1h"; 1s to 24h); one with an interval may lag twice its interval.</param>
/// <param name="Source">"config": the config file's values (never set through the API); "api": set through the API and kept in the pool, winning over the file.</param>
public sealed record AlertThresholdsDto(double PoolFullPercent, string StalledJob, string Rpo, string Source);

/// <summary>PUT /api/v1/alerts/thresholds: only the fields given change; every given field is checked before any applies.</summary>
public sealed record UpdateAlertThresholdsRequest(double? PoolFullPercent = null, string? StalledJob = null, string? Rpo = null);
