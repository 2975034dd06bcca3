namespace Tidemark.Scsi;

/// <summary>
/// The state one I_T nexus (initiator port and target port) keeps for one logical unit: which unit
/// attentions it has already been told about (SAM-5 5.14). Created by
/// <see cref="ScsiLogicalUnit.OpenNexus"/> when a session first addresses the unit; not thread-safe,
/// owned by one connection loop.
/// </summary>
public sealed class ScsiNexus
{
    internal ScsiNexus(ScsiLogicalUnit unit, long key, string port)
    {
        Unit = unit;
        Key = key;
        Port = port;
        SeenResetGeneration = unit.ResetGeneration;
        SeenTargetResetGeneration = unit.TargetResetGeneration;
        SeenCapacityGeneration = unit.CapacityGeneration;
        SeenModeGeneration = unit.ModeGeneration;
    }

    public ScsiLogicalUnit Unit { get; }

    /// <summary>Identity of the nexus, for reservations.</summary>
    public long Key { get; }

    /// <summary>The initiator port name (TransportID) reported in READ FULL STATUS.</summary>
    public string Port { get; }

    internal int SeenResetGeneration { get; set; }

    internal int SeenTargetResetGeneration { get; set; }

    internal int SeenCapacityGeneration { get; set; }

    internal int SeenModeGeneration { get; set; }

    /// <summary>
    /// SPC-4 6.18.2: the status of EXTENDED COPY commands sent with LIST ID USAGE 00b, by LIST
    /// IDENTIFIER, until RECEIVE COPY RESULTS (COPY STATUS) collects it. Per I_T nexus, so it is
    /// gone with the session; bounded by <see cref="MaxHeldCopyResults"/> (the oldest goes first).
    /// </summary>
    internal Dictionary<byte, CopyResult> HeldCopyResults { get; } = [];

    /// <summary>How many copy statuses one nexus may hold; a real initiator collects each at once.</summary>
    internal const int MaxHeldCopyResults = 16;

    internal void HoldCopyResult(byte listId, CopyResult result)
    {
        HeldCopyResults.Remove(listId);
        if (HeldCopyResults.Count >= MaxHeldCopyResults)
        {
            HeldCopyResults.Remove(HeldCopyResults.MinBy(r => r.Value.Sequence).Key);
        }

        HeldCopyResults[listId] = result with { Sequence = ++_copySequence };
    }

    private long _copySequence;

    /// <summary>
    /// SPC-4 6.19: what RECEIVE ROD TOKEN INFORMATION reports for POPULATE TOKEN and WRITE USING TOKEN
    /// commands of this nexus, by their 32-bit LIST IDENTIFIER; bounded like the LID1 results.
    /// </summary>
    internal Dictionary<uint, TokenCopyResult> HeldTokenResults { get; } = [];

    internal void HoldTokenResult(uint listId, TokenCopyResult result)
    {
        HeldTokenResults.Remove(listId);
        if (HeldTokenResults.Count >= MaxHeldCopyResults)
        {
            HeldTokenResults.Remove(HeldTokenResults.MinBy(r => r.Value.Sequence).Key);
        }

        HeldTokenResults[listId] = result with { Sequence = ++_copySequence };
    }
}

/// <summary>
/// The outcome of a POPULATE TOKEN (with the token it made) or WRITE USING TOKEN: the service action,
/// the copy operation status (01h completed, 02h with errors, 04h completed with a residual), the
/// sense of a failure, and how many logical blocks were written.
/// </summary>
internal readonly record struct TokenCopyResult(byte ServiceAction, byte Status, byte[]? Sense, long BlocksTransferred, byte[]? Token, long Sequence = 0);

/// <summary>What COPY STATUS reports of one finished EXTENDED COPY (SPC-4 6.18.3).</summary>
internal readonly record struct CopyResult(bool Failed, ushort SegmentsProcessed, long BytesCopied, long Sequence = 0);
