namespace Tidemark.Api;

/// <summary>What a token may do. Admin: everything. Operator: day-to-day changes, but not deleting volumes, releasing holds, changing partners, promoting or reversing replicas, adding stores or managing tokens. Auditor: reads only.</summary>
public static class TokenRoles
{
    public const string Admin = "admin";
    public const string Operator = "operator";
    public const string Auditor = "auditor";

    public static IReadOnlyList<string> All { get; } = [Admin, Operator, Auditor];

    /// <summary>Higher ranks include what lower ones may do: auditor 0, operator 1, admin 2; -1 when unknown.</summary>
    public static int Rank(string role) => role switch
    {
        Auditor => 0,
        Operator => 1,
        Admin => 2,
        _ => -1,
    };
}

/// <summary>A named API token; its secret is shown once, when it is created, and stored only as a hash.</summary>
public sealed record TokenDto(string Name, string Role, DateTimeOffset Created);

public sealed record CreateTokenRequest(string Name, string Role);

/// <param name="Secret">The bearer token; not shown again.</param>
public sealed record CreatedTokenDto(string Name, string Role, DateTimeOffset Created, string Secret);

/// <summary>The result of checking the audit log's hash chain.</summary>
/// <param name="Ok">True when, in both logs, every record links to the one before and the newest matches what the server last wrote.</param>
/// <param name="FirstSequence">Oldest record kept (older ones were rotated out), or null when the log is empty.</param>
/// <param name="Problems">Where the chains break, oldest first: the main log's, then the refused log's (each names its log).</param>
/// <param name="Checked">Records checked in the main log (FirstSequence and LastSequence are its too).</param>
/// <param name="Refused">The refused log's own result (its chain and sequence numbers are separate); null in its own result.</param>
public sealed record EventVerifyDto(bool Ok, long Checked, long? FirstSequence, long? LastSequence, IReadOnlyList<EventChainProblemDto> Problems, EventVerifyDto? Refused = null);

/// <param name="File">The file holding the record ("events.jsonl", "events.1.jsonl", "events-refused.jsonl").</param>
/// <param name="Line">1-based line in that file.</param>
/// <param name="Sequence">The record's sequence number, when it could be read.</param>
/// <param name="Log">The log whose chain breaks: "main" or "refused".</param>
public sealed record EventChainProblemDto(string File, long Line, long? Sequence, string Problem, string? Log = null);
