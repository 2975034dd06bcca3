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
}

/// <summary>What COPY STATUS reports of one finished EXTENDED COPY (SPC-4 6.18.3).</summary>
internal readonly record struct CopyResult(bool Failed, ushort SegmentsProcessed, long BytesCopied, long Sequence = 0);
