namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    private int _softwareWriteProtect;
    private int _modeGeneration;

    /// <summary>
    /// SPC-4 7.5.8: the control mode page's SWP bit, set and cleared by MODE SELECT from any nexus.
    /// While set, every command that would change the medium fails with DATA PROTECT / SOFTWARE WRITE
    /// PROTECTED. It is a current value only (saving pages is refused), so a restart clears it. It is
    /// kept on the device where the device holds it (an engine volume), so NBD clients and other
    /// exports of the same volume are refused too; else on this unit.
    /// </summary>
    public bool IsSoftwareWriteProtected => Volatile.Read(ref _softwareWriteProtect) != 0 || Device.SoftwareWriteProtected;

    internal int ModeGeneration => Volatile.Read(ref _modeGeneration);

    /// <summary>Why a medium-changing command is refused, or null when the unit may be written.</summary>
    private SenseData? WriteProtection => IsReadOnly ? SenseData.WriteProtected
        : IsSoftwareWriteProtected ? SenseData.SoftwareWriteProtected
        : null;

    private void SetSoftwareWriteProtect(ScsiNexus nexus, bool on)
    {
        var was = IsSoftwareWriteProtected;
        try
        {
            Device.SoftwareWriteProtected = on;
        }
        catch (StorageException e) when (e.Error == StorageError.Unsupported)
        {
            Volatile.Write(ref _softwareWriteProtect, on ? 1 : 0);
        }

        if (was == on)
        {
            return;
        }

        // SPC-4 7.5.1: a changed shared mode parameter is reported to every other I_T nexus as
        // MODE PARAMETERS CHANGED; the nexus that changed it already knows.
        nexus.SeenModeGeneration = Interlocked.Increment(ref _modeGeneration);
    }
}
