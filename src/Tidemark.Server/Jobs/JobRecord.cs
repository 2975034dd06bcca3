using System.Text.Json;

namespace Tidemark.Server.Jobs;

/// <summary>
/// A job as persisted: a control record in the pool (kind "job", version 1, named by the job id;
/// ADR 0011), written when the job starts and when it ends, so finished jobs and their outcome
/// survive a restart and a job that was running when the server stopped shows as interrupted.
/// Progress in between is not written (it would cost a synced write per step). Its own type, not
/// the API's JobDto. Field names are persisted: never rename them (ControlRecordGoldenTests).
/// </summary>
/// <param name="State">"running", "succeeded", "failed", "cancelled" or "interrupted".</param>
public sealed record JobRecord(
    string Id,
    string Kind,
    string? Subject,
    string Actor,
    bool Cancellable,
    string State,
    long Done,
    long? Total,
    string Unit,
    DateTimeOffset StartedAt,
    DateTimeOffset? FinishedAt,
    string? Error,
    string? ErrorCode,
    JsonElement? Result);
