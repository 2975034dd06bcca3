namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    private int _softwareWriteProtect;
    private int _modeGeneration;

    /// <summary>
    /// SPC-4 7.5.8: the control mode page's SWP bit, set and cleared by MODE SELECT from any nexus.
    /// While set, every command that would change the medium fails with DATA PROTECT / SOFTWARE WRITE
    /// PROTECTED. It is a current value only (saving pages is refused), so a restart clears it.
    /// </summary>
    public bool IsSoftwareWriteProtected => Volatile.Read(ref _softwareWriteProtect) != 0;

    internal int ModeGeneration => Volatile.Read(ref _modeGeneration);

    /// <summary>Why a medium-changing command is refused, or null when the unit may be written.</summary>
    private SenseData? WriteProtection => IsReadOnly ? SenseData.WriteProtected
        : IsSoftwareWriteProtected ? SenseData.SoftwareWriteProtected
        : null;

    private void SetSoftwareWriteProtect(ScsiNexus nexus, bool on)
    {
        var value = on ? 1 : 0;
        if (Interlocked.Exchange(ref _softwareWriteProtect, value) == value)
        {
            return;
        }

        // SPC-4 7.5.1: a changed shared mode parameter is reported to every other I_T nexus as
        // MODE PARAMETERS CHANGED; the nexus that changed it already knows.
        nexus.SeenModeGeneration = Interlocked.Increment(ref _modeGeneration);
    }
}
