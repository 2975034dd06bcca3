using System.Buffers;

namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    /// <summary>
    /// LOGICAL BLOCK ADDRESS and TRANSFER LENGTH of a READ (6/10/12/16), decoded as the unit decodes
    /// them (<see cref="ParseLbaAndLength"/>), for a transport that sends a READ in pieces; false for
    /// any other opcode or a CDB shorter than its form.
    /// </summary>
    public static bool TryParseRead(ReadOnlySpan<byte> cdb, out ulong lba, out uint blocks)
    {
        var formBytes = cdb.IsEmpty ? 0 : cdb[0] switch
        {
            ScsiOpcode.Read6 => 6,
            ScsiOpcode.Read10 => 10,
            ScsiOpcode.Read12 => 12,
            ScsiOpcode.Read16 => 16,
            _ => 0,
        };
        if (formBytes == 0 || cdb.Length < formBytes)
        {
            lba = 0;
            blocks = 0;
            return false;
        }

        ParseLbaAndLength(cdb, out lba, out blocks, out _);
        return true;
    }

    /// <summary>SBC-3 5.x: LOGICAL BLOCK ADDRESS, TRANSFER LENGTH and the flags byte of the 6/10/12/16-byte forms.</summary>
    internal static void ParseLbaAndLength(ReadOnlySpan<byte> cdb, out ulong lba, out uint blocks, out byte flags)
    {
        switch (cdb[0] >> 5)
        {
            case 0:
                // SBC-3 5.7 READ (6): 21-bit LBA; TRANSFER LENGTH 0 means 256 blocks.
                lba = ((uint)(cdb[1] & 0x1F) << 16) | ((uint)cdb[2] << 8) | cdb[3];
                blocks = cdb[4] == 0 ? 256u : cdb[4];
                flags = 0;
                break;
            case 1:
            case 2:
                lba = ReadUInt32(cdb, 2);
                blocks = ReadUInt16(cdb, 7);
                flags = cdb[1];
                break;
            case 5:
                lba = ReadUInt32(cdb, 2);
                blocks = ReadUInt32(cdb, 6);
                flags = cdb[1];
                break;
            default:
                lba = ReadUInt64(cdb, 2);
                blocks = ReadUInt32(cdb, 10);
                flags = cdb[1];
                break;
        }
    }

    private bool InRange(ulong lba, ulong blocks)
    {
        // SBC-3 4.5: LBA + TRANSFER LENGTH past the capacity is LBA OUT OF RANGE (checked without overflow).
        var capacity = (ulong)CapacityBlocks;
        return lba <= capacity && blocks <= capacity - lba;
    }

    /// <summary>
    /// Admits and checks a READ (6/10/12/16) exactly as <see cref="Execute"/> would (CDB form, unit
    /// attention, reservations, SANITIZE, RDPROTECT, range, transfer length) without reading, for a
    /// transport that reads it itself with <see cref="IBlockDevice.ReadAsync"/> (ADR 0021). GOOD
    /// means the read is admitted and <paramref name="plan"/> says what to read; the caller must then
    /// call <see cref="EndRead"/> exactly once, when the device is done with it (or when nothing was
    /// started). Anything else is the command's answer, sense in <paramref name="sense"/>.
    /// <paramref name="dataInBytes"/> is the initiator's buffer (the expected data transfer length).
    /// </summary>
    public ScsiResult BeginRead(ScsiNexus nexus, ReadOnlySpan<byte> cdb, int dataInBytes, Span<byte> sense, out ScsiReadPlan plan)
    {
        ArgumentNullException.ThrowIfNull(nexus);
        plan = default;
        var command = new ScsiCommand(cdb, [], [], sense);
        if (!TryParseRead(cdb, out _, out _))
        {
            return command.Fail(SenseData.InvalidOpcode);
        }

        if (!TryAdmit(nexus, command, out _, out var refused))
        {
            return refused;
        }

        var result = CheckRead(command, dataInBytes, out plan);
        if (!result.IsGood)
        {
            Interlocked.Decrement(ref _inFlight);
        }

        return result;
    }

    /// <summary>
    /// Ends a READ admitted by <see cref="BeginRead"/>: its result, from the device's outcome
    /// (<paramref name="error"/> null on success). A storage error maps as for every command;
    /// any other exception is not the command's outcome and is rethrown (it ends the connection,
    /// as it would inline). Thread-safe; never blocks.
    /// </summary>
    public ScsiResult EndRead(in ScsiReadPlan plan, Exception? error, Span<byte> sense)
    {
        Interlocked.Decrement(ref _inFlight);
        switch (error)
        {
            case null:
                return ScsiCommand.Good(plan.DataInBytes, plan.TransferLengthBytes);
            case StorageException e:
                return new ScsiCommand([], [], [], sense).Fail(MapStorageError(e.Error, write: false));
            default:
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
                return default;
        }
    }

    /// <summary>The checks of a READ once admitted (one place for the synchronous and asynchronous paths).</summary>
    private ScsiResult CheckRead(in ScsiCommand c, int dataInBytes, out ScsiReadPlan plan)
    {
        plan = default;
        ParseLbaAndLength(c.Cdb, out var lba, out var blocks, out var flags);

        // SBC-3: RDPROTECT must be zero when the unit has no protection information. DPO and FUA
        // need nothing: every read is of the device (there is no cache here to bypass).
        if ((flags & 0xE0) != 0)
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        if (!InRange(lba, blocks))
        {
            return c.Fail(SenseData.LbaOutOfRange);
        }

        var transfer = (long)blocks * BlockBytes;
        if (transfer > _options.MaxTransferBytes)
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        // The initiator's buffer may end inside a block (EDTL < SPDTL): the whole block is read, its head sent.
        var n = (int)Math.Min(transfer, Math.Max(0, dataInBytes));
        var readBytes = (n + BlockBytes - 1) / BlockBytes * BlockBytes;
        plan = new ScsiReadPlan((long)lba * BlockBytes, readBytes, n, transfer);
        return ScsiCommand.Good(n, transfer);
    }

    private ScsiResult Read(in ScsiCommand c)
    {
        var result = CheckRead(c, c.DataIn.Length, out var plan);
        if (!result.IsGood)
        {
            return result;
        }

        var n = plan.DataInBytes;
        var whole = n - (n % BlockBytes);
        if (whole > 0)
        {
            Device.Read(plan.OffsetBytes, c.DataIn[..whole]);
        }

        if (whole < n)
        {
            // The initiator's buffer ends inside a block (EDTL < SPDTL): read the block, send its head.
            var block = ArrayPool<byte>.Shared.Rent(BlockBytes);
            try
            {
                Device.Read(plan.OffsetBytes + whole, block.AsSpan(0, BlockBytes));
                block.AsSpan(0, n - whole).CopyTo(c.DataIn[whole..]);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(block);
            }
        }

        return result;
    }

    private ScsiResult Write(in ScsiCommand c)
    {
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

        // FCP-4 9.4.2 a) / libiscsi: an EDTL shorter than the CDB's transfer writes only what was sent
        // (a partial last block is merged with the medium) and reports the rest as residual overflow.
        var n = (int)Math.Min(transfer, c.DataOutBytes);
        var whole = n - (n % BlockBytes);
        var offset = (long)lba * BlockBytes;

        // WRITE (6) has no FUA bit; WRITE AND VERIFY is written through so the verify is of the medium.
        var fua = c.Opcode is ScsiOpcode.WriteAndVerify10 or ScsiOpcode.WriteAndVerify12 or ScsiOpcode.WriteAndVerify16
            || (c.Opcode != ScsiOpcode.Write6 && (flags & 0x08) != 0);
        if (whole > 0 && c.DataOutSource is { } source)
        {
            // The data is still in the transport: the device pulls it (a file store splices it in).
            Device.WriteFrom(offset, whole, source, fua);
        }
        else if (whole > 0)
        {
            Device.Write(offset, c.DataOut[..whole], fua);
        }

        if (whole < n)
        {
            var block = ArrayPool<byte>.Shared.Rent(BlockBytes);
            try
            {
                Device.Read(offset + whole, block.AsSpan(0, BlockBytes));
                if (c.DataOutSource is { } tail)
                {
                    tail.Fill(block.AsSpan(0, n - whole));
                }
                else
                {
                    c.DataOut[whole..n].CopyTo(block);
                }

                Device.Write(offset + whole, block.AsSpan(0, BlockBytes), fua);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(block);
            }
        }

        return ScsiCommand.Good(0, transfer);
    }

    private ScsiResult Verify(in ScsiCommand c)
    {
        ParseLbaAndLength(c.Cdb, out var lba, out var blocks, out var flags);

        // SBC-3 5.25: VRPROTECT bits 7-5, BYTCHK bits 2-1.
        var byteCheck = (flags >> 1) & 0x03;
        if ((flags & 0xE0) != 0 || byteCheck == 2)
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        var transfer = byteCheck switch
        {
            0 => 0L,
            1 => (long)blocks * BlockBytes,
            _ => blocks == 0 ? 0 : BlockBytes,
        };
        if (!InRange(lba, blocks))
        {
            return c.Fail(SenseData.LbaOutOfRange, transfer);
        }

        if ((long)blocks * BlockBytes > _options.MaxTransferBytes)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, transfer);
        }

        if (byteCheck == 0 || blocks == 0)
        {
            return ScsiCommand.Good(0, transfer);
        }

        if (c.DataOut.Length < transfer)
        {
            return c.Fail(SenseData.InvalidFieldInInformationUnit, transfer);
        }

        var length = (int)blocks * BlockBytes;
        var medium = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            Device.Read((long)lba * BlockBytes, medium.AsSpan(0, length));
            for (var done = 0; done < length; done += (int)Math.Min(transfer, length - done))
            {
                var expected = c.DataOut[..(int)Math.Min(transfer, length - done)];
                var actual = medium.AsSpan(done, expected.Length);
                var same = actual.CommonPrefixLength(expected);
                if (same < expected.Length)
                {
                    // SBC-3 5.25: INFORMATION is the offset of the first miscomparing byte.
                    return c.Fail(SenseData.Miscompare((uint)(done + same)), transfer);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(medium);
        }

        return ScsiCommand.Good(0, transfer);
    }

    private ScsiResult PreFetch(in ScsiCommand c)
    {
        ParseLbaAndLength(c.Cdb, out var lba, out var blocks, out _);
        return InRange(lba, blocks) ? ScsiCommand.Good() : c.Fail(SenseData.LbaOutOfRange);
    }

    private ScsiResult SynchronizeCache(in ScsiCommand c)
    {
        ParseLbaAndLength(c.Cdb, out var lba, out var blocks, out _);
        if (!InRange(lba, blocks))
        {
            return c.Fail(SenseData.LbaOutOfRange);
        }

        // DESIGN.md durability contract: SYNCHRONIZE CACHE makes every completed write durable.
        Device.Flush();
        return ScsiCommand.Good();
    }

    private ScsiResult CompareAndWrite(in ScsiCommand c)
    {
        // SBC-3 5.2: LBA bytes 2-9, NUMBER OF LOGICAL BLOCKS byte 13; data-out is verify data then write data.
        var lba = ReadUInt64(c.Cdb, 2);
        var blocks = (uint)c.Cdb[13];
        var flags = c.Cdb[1];
        var transfer = 2L * blocks * BlockBytes;
        if ((flags & 0xE0) != 0 || blocks > _options.MaxCompareAndWriteBlocks)
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

        if (blocks == 0 && c.DataOut.IsEmpty)
        {
            return ScsiCommand.Good(0, transfer);
        }

        // The data-out buffer must hold exactly the verify and write halves the CDB names.
        if (c.DataOut.Length != transfer || blocks == 0)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, transfer);
        }

        var half = (int)(transfer / 2);
        var mismatch = Device.CompareAndWrite((long)lba * BlockBytes, c.DataOut[..half], c.DataOut[half..], (flags & 0x08) != 0);
        return mismatch >= 0 ? c.Fail(SenseData.Miscompare((uint)mismatch), transfer) : ScsiCommand.Good(0, transfer);
    }
}
