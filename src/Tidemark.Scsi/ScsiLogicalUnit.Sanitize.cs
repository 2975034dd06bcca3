using System.Buffers;
using System.Buffers.Binary;

namespace Tidemark.Scsi;

/// <remarks>
/// SANITIZE on a thin volume is logical: afterwards no LBA of the unit returns what it held before.
/// It does not scrub the pool's free space, and snapshots of the volume keep their own images
/// (docs/ISCSI-CONFORMANCE.md says what an operator must delete as well).
/// </remarks>
public sealed partial class ScsiLogicalUnit
{
    private const int SanitizeChunkBytes = 1 << 20;

    private int _sanitizing;
    private int _inFlight;

    private bool Sanitizing => Volatile.Read(ref _sanitizing) != 0;

    /// <summary>SBC-4 4.11: commands a unit still accepts while a sanitize operation runs.</summary>
    private static bool AllowedDuringSanitize(byte opcode) =>
        opcode is ScsiOpcode.Inquiry or ScsiOpcode.ReportLuns or ScsiOpcode.RequestSense;

    private ScsiResult Sanitize(in ScsiCommand c)
    {
        // SBC-4 5.30: IMMED byte 1 bit 7, AUSE bit 5, SERVICE ACTION bits 4-0; bytes 2-6 reserved;
        // PARAMETER LIST LENGTH bytes 7-8. IMMED is honoured by finishing before status: the operation
        // is a metadata change or a bounded pass of writes, and nothing observes the difference.
        var action = (byte)(c.Cdb[1] & 0x1F);
        var listLength = ReadUInt16(c.Cdb, 7);
        if ((c.Cdb[1] & 0x40) != 0 || c.Cdb[2..7].ContainsAnyExcept((byte)0))
        {
            return c.Fail(SenseData.InvalidFieldInCdb, listLength);
        }

        var listOk = action switch
        {
            // The list is a 4-byte header and an INITIALIZATION PATTERN of 1 to one block of bytes.
            ScsiOpcode.SanitizeOverwrite => listLength >= 5 && listLength <= BlockBytes + 4,
            ScsiOpcode.SanitizeBlockErase or ScsiOpcode.SanitizeCryptoErase or ScsiOpcode.SanitizeExitFailureMode => listLength == 0,
            _ => false,
        };
        if (!listOk)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, listLength);
        }

        // A failed sanitize reports its error and leaves the unit usable (the initiator may repeat it),
        // so there is never a sanitize failure mode to leave.
        if (action == ScsiOpcode.SanitizeExitFailureMode)
        {
            return ScsiCommand.Good();
        }

        if (WriteProtection is { } writeProtection)
        {
            return c.Fail(writeProtection, listLength);
        }

        Span<byte> block = BlockBytes <= 4096 ? stackalloc byte[BlockBytes] : new byte[BlockBytes];
        block.Clear();
        if (action == ScsiOpcode.SanitizeOverwrite)
        {
            if (c.DataOut.Length < listLength)
            {
                return c.Fail(SenseData.ParameterListLengthError, listLength);
            }

            if (!TryBuildOverwriteBlock(c.DataOut[..listLength], block))
            {
                return c.Fail(SenseData.InvalidFieldInParameterList, listLength);
            }
        }

        // SBC-4 4.11: only one sanitize at a time, and no other command runs while it does.
        if (Interlocked.CompareExchange(ref _sanitizing, 1, 0) != 0)
        {
            return c.Fail(SenseData.SanitizeInProgress, listLength);
        }

        try
        {
            // Commands that passed the check before the flag was raised finish first, so none of their
            // writes lands after the pass covered its blocks. This command counts itself.
            SpinWait.SpinUntil(() => Volatile.Read(ref _inFlight) <= 1);
            var size = CapacityBlocks * BlockBytes;
            if (!block.ContainsAnyExcept((byte)0))
            {
                // BLOCK ERASE, CRYPTO ERASE and a zero pattern: deallocate everything (LBPRZ=1, reads
                // return zeros). A thin volume holds no key to destroy, so CRYPTO ERASE is the same.
                Device.Unmap(0, size);
            }
            else
            {
                OverwriteAll(block, size);
            }

            // A completed sanitize must survive a crash like any acknowledged FUA write.
            Device.Flush();
        }
        finally
        {
            Volatile.Write(ref _sanitizing, 0);
        }

        return ScsiCommand.Good(0, listLength);
    }

    /// <summary>
    /// SBC-4 5.30.2 parameter list: INVERT byte 0 bit 7, TEST bits 6-5, OVERWRITE COUNT bits 4-0,
    /// INITIALIZATION PATTERN LENGTH bytes 2-3, then the pattern, repeated to fill a block.
    /// </summary>
    private bool TryBuildOverwriteBlock(ReadOnlySpan<byte> list, Span<byte> block)
    {
        var invert = (list[0] & 0x80) != 0;
        var test = (list[0] >> 5) & 0x03;
        var passes = list[0] & 0x1F;
        var patternLength = BinaryPrimitives.ReadUInt16BigEndian(list[2..]);
        if (test != 0 || passes == 0 || patternLength == 0 || patternLength > BlockBytes || patternLength != list.Length - 4)
        {
            return false;
        }

        var pattern = list.Slice(4, patternLength);
        for (var p = 0; p < block.Length; p += patternLength)
        {
            pattern[..Math.Min(patternLength, block.Length - p)].CopyTo(block[p..]);
        }

        // Passes before the last leave nothing the last one does not overwrite on a virtual medium,
        // so only the last is written: with INVERT it is the inverted pattern after an even count.
        if (invert && passes % 2 == 0)
        {
            for (var i = 0; i < block.Length; i++)
            {
                block[i] = (byte)~block[i];
            }
        }

        return true;
    }

    private void OverwriteAll(ReadOnlySpan<byte> block, long size)
    {
        var chunk = ArrayPool<byte>.Shared.Rent(SanitizeChunkBytes);
        try
        {
            var fill = chunk.AsSpan(0, SanitizeChunkBytes - (SanitizeChunkBytes % block.Length));
            for (var p = 0; p < fill.Length; p += block.Length)
            {
                block.CopyTo(fill[p..]);
            }

            for (long done = 0; done < size; done += fill.Length)
            {
                Device.Write(done, fill[..(int)Math.Min(fill.Length, size - done)], forceUnitAccess: false);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }
}
