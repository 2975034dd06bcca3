namespace Tidemark.Recovery.Mail;

/// <summary>A snapshot's mail store, read by whatever understands its format (docs/adr/0012).</summary>
public interface IMailStore
{
    /// <summary>
    /// Every message that matches, sorted by user, folder and INTERNALDATE. When
    /// <paramref name="stageDirectory"/> is given, each match's <see cref="FoundMessage.Path"/> is a
    /// file with its bytes (a store whose messages are not one file each copies them there).
    /// </summary>
    Task<IReadOnlyList<FoundMessage>> SearchAsync(MailSearchFilter filter, string? stageDirectory, CancellationToken ct);
}
