namespace Tidemark.Recovery.Mail;

/// <summary>
/// One message found in a snapshot's mail store: where it is, what it says about itself, and the
/// state it had then (IMAP flags, keywords, INTERNALDATE).
/// </summary>
/// <param name="Folder">the IMAP name with '/' between levels ("INBOX", "Archive/2026")</param>
/// <param name="Path">the message file in the mounted snapshot</param>
/// <param name="InternalDate">when the server received it (IMAP INTERNALDATE)</param>
/// <param name="Date">the Date: header, as the sender set it</param>
/// <param name="Flags">IMAP system flags ("\Seen", "\Flagged"...)</param>
public sealed record FoundMessage(
    string User,
    string Folder,
    string Path,
    DateTimeOffset InternalDate,
    DateTimeOffset? Date,
    string From,
    string To,
    string Subject,
    string? MessageId,
    long SizeBytes,
    IReadOnlyList<string> Flags,
    IReadOnlyList<string> Keywords,
    bool? HasAttachment);
