using System.Buffers.Binary;

namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    /// <summary>MAXIMUM ATOMIC TRANSFER LENGTH in logical blocks; 0 when the device has no atomic write.</summary>
    private uint MaxAtomicBlocks => (uint)(Math.Min(Device.MaxAtomicWriteBytes, _options.MaxTransferBytes) / BlockBytes);

    /// <summary>
    /// ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY in logical blocks: the device writes
    /// whole allocation units atomically (a partial unit would need a read-modify-write the device
    /// cannot make atomic with the rest), so a 512-byte unit over 4 KiB blocks asks for 8.
    /// </summary>
    private uint AtomicUnitBlocks => MaxAtomicBlocks == 0 ? 0u : (uint)Math.Max(1, Device.AllocationUnitBytes / BlockBytes);

    private void WriteAtomicLimits(Span<byte> blockLimits)
    {
        // SBC-4 6.6.4 Block Limits: MAXIMUM ATOMIC TRANSFER LENGTH bytes 44-47, ATOMIC ALIGNMENT 48-51,
        // ATOMIC TRANSFER LENGTH GRANULARITY 52-55. The two atomic boundary fields (56-63) stay zero:
        // a write that crosses an atomic boundary is not offered, so ATOMIC BOUNDARY must be zero.
        BinaryPrimitives.WriteUInt32BigEndian(blockLimits[44..], MaxAtomicBlocks);
        BinaryPrimitives.WriteUInt32BigEndian(blockLimits[48..], AtomicUnitBlocks);
        BinaryPrimitives.WriteUInt32BigEndian(blockLimits[52..], AtomicUnitBlocks);
    }

    private ScsiResult WriteAtomic(in ScsiCommand c)
    {
        // SBC-4 5.48 WRITE ATOMIC (16): WRPROTECT bits 7-5, DPO bit 4, FUA bit 3 of byte 1; LBA bytes
        // 2-9; ATOMIC BOUNDARY bytes 10-11; TRANSFER LENGTH bytes 12-13 (16 bits, unlike WRITE (16)).
        var flags = c.Cdb[1];
        var lba = ReadUInt64(c.Cdb, 2);
        var boundary = ReadUInt16(c.Cdb, 10);
        var blocks = (uint)ReadUInt16(c.Cdb, 12);
        var transfer = (long)blocks * BlockBytes;
        var unit = AtomicUnitBlocks;
        if (unit == 0)
        {
            // Not listed in REPORT SUPPORTED OPERATION CODES and MAXIMUM ATOMIC TRANSFER LENGTH 0.
            return c.Fail(SenseData.InvalidOpcode, transfer);
        }

        // No protection information (WRPROTECT must be 0); MAXIMUM ATOMIC BOUNDARY SIZE 0 (ATOMIC
        // BOUNDARY must be 0).
        if ((flags & 0xE0) != 0 || boundary != 0)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, transfer);
        }

        if (WriteProtection is { } writeProtection)
        {
            return c.Fail(writeProtection, transfer);
        }

        if (!InRange(lba, blocks))
        {
            return c.Fail(SenseData.LbaOutOfRange, transfer);
        }

        // SBC-4 5.48: longer than MAXIMUM ATOMIC TRANSFER LENGTH, or a starting LBA or length that
        // is not a multiple of ATOMIC ALIGNMENT / ATOMIC TRANSFER LENGTH GRANULARITY: INVALID FIELD IN CDB.
        if (blocks > MaxAtomicBlocks || lba % unit != 0 || blocks % unit != 0)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, transfer);
        }

        if (blocks == 0)
        {
            return ScsiCommand.Good();
        }

        // All or nothing: data that stops short of the transfer length cannot be written atomically
        // (a WRITE writes what came; this one refuses, with nothing written).
        if (c.DataOut.Length < transfer)
        {
            return c.Fail(SenseData.InvalidFieldInInformationUnit, transfer);
        }

        Device.WriteAtomic((long)lba * BlockBytes, c.DataOut[..(int)transfer], forceUnitAccess: (flags & 0x08) != 0);
        return ScsiCommand.Good(0, transfer);
    }
}
