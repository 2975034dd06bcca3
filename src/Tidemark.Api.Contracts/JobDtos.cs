using System.Text.Json;

namespace Tidemark.Api;

/// <summary>
/// A long operation running in the server (deleting a large snapshot or volume, verifying the pool,
/// later exports and replication): its progress, and its outcome when finished.
/// </summary>
/// <param name="State">"running", "succeeded", "failed", "cancelled" or "interrupted" (was running when the server stopped).</param>
/// <param name="Done">Units of work done so far (see <paramref name="Unit"/>).</param>
/// <param name="Total">Units in all, when known ahead.</param>
/// <param name="EtaSeconds">Estimated seconds left, from the rate so far (null until it can be estimated).</param>
/// <param name="Result">What the operation returns when it succeeded (for verify, the report).</param>
public sealed record JobDto(
    string Id,
    string Kind,
    string? Subject,
    string State,
    long Done,
    long? Total,
    string Unit,
    double? Percent,
    double? EtaSeconds,
    bool Cancellable,
    string Actor,
    DateTimeOffset StartedAt,
    DateTimeOffset? FinishedAt,
    string? Error,
    string? ErrorCode,
    JsonElement? Result);
