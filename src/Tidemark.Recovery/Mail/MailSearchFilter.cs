namespace Tidemark.Recovery.Mail;

/// <summary>
/// What to look for; every given criterion must match. Text criteria are case-insensitive
/// substrings except user and folder (exact; INBOX in any case) and Message-ID (exact, with or
/// without angle brackets). Since/Until bound the INTERNALDATE (received date): since inclusive,
/// until exclusive.
/// </summary>
public sealed record MailSearchFilter
{
    public IReadOnlyList<string> Users { get; init; } = [];

    public string? Folder { get; init; }

    public string? MessageId { get; init; }

    public string? Subject { get; init; }

    public string? From { get; init; }

    public string? To { get; init; }

    public DateTimeOffset? Since { get; init; }

    public DateTimeOffset? Until { get; init; }

    public bool HasAttachment { get; init; }

    public bool IsEmpty => Users.Count == 0 && Folder is null && MessageId is null && Subject is null && From is null && To is null && Since is null && Until is null && !HasAttachment;

    public bool MatchesUser(string user) => Users.Count == 0 || Users.Contains(user, StringComparer.Ordinal);

    public bool MatchesFolder(string folder) =>
        Folder is null
        || string.Equals(folder, Folder, StringComparison.Ordinal)
        || (string.Equals(Folder, "INBOX", StringComparison.OrdinalIgnoreCase) && folder == "INBOX");

    public bool MatchesInternalDate(DateTimeOffset internalDate) =>
        (Since is null || internalDate >= Since) && (Until is null || internalDate < Until);

    /// <summary>The header criteria (the location and date ones are checked before a file is opened).</summary>
    public bool MatchesHeaders(string? messageId, string subject, string from, string recipients) =>
        (MessageId is null || (messageId is not null && NormalizeMessageId(messageId) == NormalizeMessageId(MessageId)))
        && Contains(subject, Subject)
        && Contains(from, From)
        && Contains(recipients, To);

    public static string NormalizeMessageId(string id) => id.Trim().TrimStart('<').TrimEnd('>').Trim();

    private static bool Contains(string text, string? wanted) =>
        wanted is null || text.Contains(wanted, StringComparison.OrdinalIgnoreCase);
}
