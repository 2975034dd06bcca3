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
}
