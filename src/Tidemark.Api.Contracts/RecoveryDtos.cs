namespace Tidemark.Api;

/// <summary>
/// What a recovery run on a recovery host did with a snapshot (issue 23: "every recovery is an
/// event"): the recovery tool reports it to the server when it ends, also when it failed, and the
/// server records it as a <c>recovery.mail</c> event under the reporting token's name.
/// </summary>
/// <param name="Destination">"list" (dry run), "imap HOST:PORT", "smtp HOST:PORT to ADDRESS", "export DIR (eml|mbox)"</param>
/// <param name="Messages">one line per message acted on, "USER/FOLDER MESSAGE-ID: RESULT" (at most <see cref="MaxMessages"/>)</param>
/// <param name="Error">why the run failed, when it did</param>
public sealed record RecoveryReportDto(
    string Destination,
    int Matched,
    int Restored,
    int Duplicates,
    int Failed,
    IReadOnlyList<string> Messages,
    string? Error = null)
{
    public const int MaxMessages = 200;
    public const int MaxTextLength = 1024;
}
