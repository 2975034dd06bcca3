using System.Buffers;
using System.Buffers.Binary;

namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    private ScsiResult Unmap(in ScsiCommand c)
    {
        // SBC-3 5.28: ANCHOR (byte 1 bit 0) needs anchored-state support, which a thin volume lacks.
        if ((c.Cdb[1] & 0x01) != 0)
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        var listLength = ReadUInt16(c.Cdb, 7);
        if (WriteProtection is { } writeProtection)
        {
            return c.Fail(writeProtection, listLength);
        }

        if (listLength == 0)
        {
            return ScsiCommand.Good();
        }

        var list = c.DataOut[..Math.Min(listLength, c.DataOut.Length)];
        if (list.Length < 8)
        {
            return c.Fail(SenseData.ParameterListLengthError, listLength);
        }

        // Header: UNMAP DATA LENGTH, UNMAP BLOCK DESCRIPTOR DATA LENGTH, then 16-byte descriptors.
        var descriptorBytes = Math.Min(BinaryPrimitives.ReadUInt16BigEndian(list[2..]), list.Length - 8) & ~15;
        var descriptors = list.Slice(8, descriptorBytes);
        if (descriptors.Length / 16 > _options.MaxUnmapDescriptors)
        {
            return c.Fail(SenseData.InvalidFieldInParameterList, listLength);
        }

        // Validate every descriptor before changing anything.
        for (var p = 0; p < descriptors.Length; p += 16)
        {
            var lba = BinaryPrimitives.ReadUInt64BigEndian(descriptors[p..]);
            var blocks = BinaryPrimitives.ReadUInt32BigEndian(descriptors[(p + 8)..]);
            if (!InRange(lba, blocks))
            {
                return c.Fail(SenseData.LbaOutOfRange, listLength);
            }

            if (blocks > MaxUnmapBlocks)
            {
                return c.Fail(SenseData.InvalidFieldInParameterList, listLength);
            }
        }

        for (var p = 0; p < descriptors.Length; p += 16)
        {
            var lba = BinaryPrimitives.ReadUInt64BigEndian(descriptors[p..]);
            var blocks = BinaryPrimitives.ReadUInt32BigEndian(descriptors[(p + 8)..]);
            if (blocks > 0)
            {
                Device.Unmap((long)lba * BlockBytes, (long)blocks * BlockBytes);
            }
        }

        return ScsiCommand.Good(0, listLength);
    }

    private ScsiResult WriteSame(in ScsiCommand c)
    {
        // SBC-3 5.42/5.43: UNMAP bit 3 and ANCHOR bit 4 of byte 1; NDOB bit 0 in the 16-byte form.
        var is16 = c.Opcode == ScsiOpcode.WriteSame16;
        var flags = c.Cdb[1];
        var lba = is16 ? ReadUInt64(c.Cdb, 2) : ReadUInt32(c.Cdb, 2);
        var blocks = is16 ? ReadUInt32(c.Cdb, 10) : ReadUInt16(c.Cdb, 7);
        var unmap = (flags & 0x08) != 0;
        var noDataOut = is16 && (flags & 0x01) != 0;
        var transfer = noDataOut ? 0 : BlockBytes;
        if ((flags & 0xE0) != 0 || (flags & 0x10) != 0 || (!is16 && (flags & 0x01) != 0))
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

        // SBC-4 5.48 with WSNZ=0: NUMBER OF LOGICAL BLOCKS 0 means "from LBA to the last block".
        // MAXIMUM WRITE SAME LENGTH bounds that form too, so a zero count reaches at most the last
        // MaxWriteSameBlocks blocks of the unit: a mistyped count cannot zero a whole volume.
        var capacity = (ulong)CapacityBlocks;
        if (blocks == 0 && lba >= capacity)
        {
            return c.Fail(SenseData.LbaOutOfRange, transfer);
        }

        var count = blocks == 0 ? capacity - lba : blocks;
        if (count > MaxWriteSameBlocks)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, transfer);
        }

        // The data-out buffer is exactly one logical block (none with NDOB).
        if (!noDataOut && c.DataOut.Length != BlockBytes)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, transfer);
        }

        var pattern = noDataOut ? default : c.DataOut[..BlockBytes];
        var offset = (long)lba * BlockBytes;
        var length = (long)count * BlockBytes;
        if (unmap)
        {
            // SBC-4 WRITE SAME, UNMAP=1 ANCHOR=0: an unmap operation, whatever the data block holds; a thin
            // unit should deallocate. LBPRZ=1: the range then reads zeros.
            Device.Unmap(offset, length);
            return ScsiCommand.Good(0, transfer);
        }

        if (noDataOut || !pattern.ContainsAnyExcept((byte)0))
        {
            Device.WriteZeroes(offset, length, mayUnmap: false);
            return ScsiCommand.Good(0, transfer);
        }

        const int ChunkBytes = 256 * 1024;
        var chunk = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            var fill = chunk.AsSpan(0, (int)Math.Min(ChunkBytes - (ChunkBytes % BlockBytes), length));
            for (var p = 0; p < fill.Length; p += BlockBytes)
            {
                pattern.CopyTo(fill[p..]);
            }

            for (long done = 0; done < length; done += fill.Length)
            {
                var n = (int)Math.Min(fill.Length, length - done);
                Device.Write(offset + done, fill[..n], forceUnitAccess: false);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }

        return ScsiCommand.Good(0, transfer);
    }
}
