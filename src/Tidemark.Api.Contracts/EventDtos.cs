using System.Text.Json.Serialization;

namespace Tidemark.Api;

/// <summary>
/// One entry of the server's event and audit log: a change made through the API (who, when, what,
/// and whether it worked), or something the server did on its own (a policy snapshot, a pool grown).
/// </summary>
/// <param name="Sequence">Increases by one per event within its <paramref name="Log"/>, also across restarts; page with <c>after</c> (and <c>log=refused</c> for the refused log).</param>
/// <param name="Kind">Dotted name such as "volume.create", "snapshot.delete", "pool.grow", "auth.failed".</param>
/// <param name="Subject">What it concerns: a volume, "volume@snapshot", an export, a policy; null when nothing in particular.</param>
/// <param name="Actor">The API token's name ("admin", "alice"), "partner:NAME", "server", "policy:NAME", or "anonymous" (auth.failed).</param>
/// <param name="Outcome">
/// "ok"; "failed" with the error in <paramref name="Message"/>; or "refused": the server declined,
/// by a safety rule and with nothing changed, what a partner or its own start-up asked for, and the
/// message says why and what to run: <c>replica.refused</c> (a stream, scan or demotion from a stale
/// role generation), <c>replica.split-brain</c> (a fail-back into a volume written after the common
/// snapshot, without --discard-writes-at home; with it the same kind is "ok" and names the snapshot
/// keeping the discarded writes), <c>export.read-only</c> (a read-write export of a replica served
/// read-only at start). Refused events are real history, kept in the main log, not the refused-requests log.
/// </param>
/// <param name="Prev">SHA-256 (hex) of the previous record's line as stored in the same log: each log is a hash chain, so an edited or removed record shows ('tidemark event verify').</param>
/// <param name="Log">"main" (real history, DATA/events.jsonl) or "refused" (refused requests, DATA/events-refused.jsonl, rotated sooner); not stored in the line, the file says it.</param>
public sealed record EventDto(
    long Sequence,
    DateTimeOffset Time,
    string Kind,
    string? Subject,
    string Actor,
    string Outcome,
    string Message,
    string? Remote = null,
    string? Prev = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Log = null);
