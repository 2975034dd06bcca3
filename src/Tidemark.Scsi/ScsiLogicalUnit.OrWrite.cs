using System.Buffers;
using System.Numerics;
using System.Runtime.InteropServices;

namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    /// <summary>
    /// Read-OR-write rounds an ORWRITE retries when another writer changed its blocks between the read
    /// and the write; past this the command ends BUSY and the initiator retries it (SAM-5 5.3.1).
    /// </summary>
    private const int MaxOrWriteAttempts = 16;

    private ScsiResult OrWrite(in ScsiCommand c)
    {
        // SBC-4 5.11 ORWRITE (16): ORPROTECT bits 7-5, DPO bit 4, FUA bit 3 of byte 1; LBA bytes 2-9;
        // TRANSFER LENGTH bytes 10-13. The 16-byte form always ORs (BMOP is only in the 32-byte form).
        ParseLbaAndLength(c.Cdb, out var lba, out var blocks, out var flags);
        var transfer = (long)blocks * BlockBytes;
        if ((flags & 0xE0) != 0)
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

        if (transfer > _options.MaxTransferBytes)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, transfer);
        }

        if (blocks == 0)
        {
            return ScsiCommand.Good();
        }

        if (c.DataOut.Length < transfer)
        {
            return c.Fail(SenseData.InvalidFieldInInformationUnit, transfer);
        }

        // SBC-4 4.x: read, OR and write are one uninterrupted operation. The device's compare-and-write
        // writes the result only while the medium still holds what was read, so a write racing in
        // between makes this round retry instead of being overwritten by stale data.
        var length = (int)transfer;
        var offset = (long)lba * BlockBytes;
        var fua = (flags & 0x08) != 0;
        var data = c.DataOut[..length];
        var buffer = ArrayPool<byte>.Shared.Rent(2 * length);
        try
        {
            var current = buffer.AsSpan(0, length);
            var result = buffer.AsSpan(length, length);
            for (var attempt = 0; attempt < MaxOrWriteAttempts; attempt++)
            {
                Device.Read(offset, current);
                current.CopyTo(result);
                OrInto(result, data);
                if (Device.CompareAndWrite(offset, current, result, fua) < 0)
                {
                    return ScsiCommand.Good(0, transfer);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return new ScsiResult(ScsiStatus.Busy, 0, 0, transfer);
    }

    private static void OrInto(Span<byte> destination, ReadOnlySpan<byte> source)
    {
        var vectors = MemoryMarshal.Cast<byte, Vector<byte>>(destination);
        var sourceVectors = MemoryMarshal.Cast<byte, Vector<byte>>(source);
        for (var i = 0; i < vectors.Length; i++)
        {
            vectors[i] |= sourceVectors[i];
        }

        for (var i = vectors.Length * Vector<byte>.Count; i < destination.Length; i++)
        {
            destination[i] |= source[i];
        }
    }
}
