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
