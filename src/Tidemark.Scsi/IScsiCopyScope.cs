namespace Tidemark.Scsi;

/// <summary>
/// The logical units an EXTENDED COPY received by one unit may name as copy source or destination
/// (SPC-4 calls them copy targets). The server decides which units an initiator may reach this way;
/// a unit without a scope copies only within itself.
/// </summary>
public interface IScsiCopyScope
{
    /// <summary>
    /// Units the initiator port (as in <see cref="ScsiNexus.Port"/>) may read from or write to by copy
    /// offload, besides the unit that received the command. Must not hand out a unit the initiator
    /// could not log in to and use directly.
    /// </summary>
    IEnumerable<ScsiLogicalUnit> CopyTargets(string initiatorPort);

    /// <summary>Where POPULATE TOKEN keeps tokens, so WRITE USING TOKEN on another unit finds them.</summary>
    RodTokenStore Tokens { get; }
}
