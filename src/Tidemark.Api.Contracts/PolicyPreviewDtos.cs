namespace Tidemark.Api;

/// <summary>
/// What a policy's retention would do to the snapshots its volume or group has now
/// (POST /api/v1/policies/preview), computed by the code the policy runs.
/// </summary>
/// <param name="AsIfOwned">
/// True when the policy (new, or retargeted) has made none of them: the rule is then applied to all of
/// them as if it had, to show what it means. A policy only ever deletes snapshots it made itself.
/// </param>
public sealed record PolicyPreviewDto(bool AsIfOwned, int Keep, int Drop, IReadOnlyList<PolicyPreviewSnapshotDto> Snapshots);

/// <param name="Verdict">"keep" (the rule keeps it), "drop" (the rule deletes it), "protected" (the rule would delete it, but it is held, exported, has a view or replication needs it: kept; <paramref name="Reason"/> says which) or "unmanaged" (not made by this policy: never deleted by it).</param>
public sealed record PolicyPreviewSnapshotDto(string Address, string Name, DateTimeOffset CreatedAt, string Verdict, string? Reason);
