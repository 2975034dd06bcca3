namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    private const long NoHolder = 0;
    private long _reservationHolder;

    private bool IsReservedByOther(long nexusKey)
    {
        var holder = Volatile.Read(ref _reservationHolder);
        return holder != NoHolder && holder != nexusKey;
    }

    /// <summary>SPC-2 5.5.1: commands a reservation held by another initiator does not block.</summary>
    private static bool AllowedUnderReservation(byte opcode) => opcode is ScsiOpcode.Inquiry or ScsiOpcode.RequestSense
        or ScsiOpcode.ReportLuns or ScsiOpcode.Release6 or ScsiOpcode.Release10 or ScsiOpcode.MaintenanceIn;

    private ScsiResult Reserve(ScsiNexus nexus, in ScsiCommand c)
    {
        // SPC-2 7.21: RESERVE (6/10) of the whole unit; third-party and extents are not supported.
        if (c.Opcode == ScsiOpcode.Reserve10 && (c.Cdb[1] & 0x13) != 0)
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        var previous = Interlocked.CompareExchange(ref _reservationHolder, nexus.Key, NoHolder);
        return previous == NoHolder || previous == nexus.Key
            ? ScsiCommand.Good()
            : new ScsiResult(ScsiStatus.ReservationConflict, 0, 0, 0);
    }

    private ScsiResult Release(ScsiNexus nexus, in ScsiCommand c)
    {
        // SPC-2 7.20: releasing a reservation one does not hold is not an error.
        _ = c;
        ReleaseReservation(nexus.Key);
        return ScsiCommand.Good();
    }

    private void ReleaseReservation(long nexusKey) => Interlocked.CompareExchange(ref _reservationHolder, NoHolder, nexusKey);

    private void ClearReservation() => Volatile.Write(ref _reservationHolder, NoHolder);
}
