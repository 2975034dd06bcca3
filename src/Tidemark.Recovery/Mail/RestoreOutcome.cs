namespace Tidemark.Recovery.Mail;

/// <summary>What happened to one message: restored (into Folder), skipped as already there, or failed.</summary>
public sealed record RestoreOutcome(FoundMessage Message, string Result, string Target, string? Detail = null)
{
    public const string Restored = "restored";
    public const string Duplicate = "skipped-duplicate";
    public const string Failed = "failed";
}
