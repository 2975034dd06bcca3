using System.Buffers.Binary;

namespace Tidemark.Scsi;

/// <remarks>
/// Token copy (ODX): POPULATE TOKEN (SBC-3 5.9) makes a ROD token naming ranges of this unit,
/// WRITE USING TOKEN (SBC-3 5.41) on any unit in the copy scope copies them into its own ranges
/// through the same in-server copy and checks as EXTENDED COPY, and RECEIVE ROD TOKEN INFORMATION
/// (SPC-4 6.19) hands the token and the outcome back. Every command completes before its status,
/// so IMMED only changes when the initiator asks for the result, never the result.
/// </remarks>
public sealed partial class ScsiLogicalUnit
{
    /// <summary>INACTIVITY TIMEOUT 0 asks for the copy manager's default (SBC-3 5.9.2).</summary>
    private static readonly TimeSpan DefaultTokenInactivity = TimeSpan.FromSeconds(60);

    /// <summary>A token pins its source unit and ranges in memory; ten minutes bounds how long an unused one does.</summary>
    private static readonly TimeSpan MaxTokenInactivity = TimeSpan.FromMinutes(10);

    /// <summary>SBC-3 5.9.2: POPULATE TOKEN parameter data header (before the range descriptors).</summary>
    private const int PopulateTokenHeaderBytes = 16;

    /// <summary>SBC-3 5.41.2: WRITE USING TOKEN parameter data header, ROD token included.</summary>
    private const int WriteUsingTokenHeaderBytes = 536;

    private const int RangeDescriptorBytes = 16;

    /// <summary>A unit without a copy scope keeps its own tokens, usable only on itself.</summary>
    private RodTokenStore? _ownTokens;

    private RodTokenStore Tokens => CopyScope?.Tokens ?? LazyInitializer.EnsureInitialized(ref _ownTokens, () => new RodTokenStore());

    private ScsiResult PopulateToken(ScsiNexus nexus, in ScsiCommand c)
    {
        // SBC-3 5.9.1: LIST IDENTIFIER bytes 6-9, PARAMETER LIST LENGTH bytes 10-13.
        var listId = ReadUInt32(c.Cdb, 6);
        var length = (long)ReadUInt32(c.Cdb, 10);
        if (length == 0)
        {
            return ScsiCommand.Good();
        }

        if (length < PopulateTokenHeaderBytes || length > PopulateTokenHeaderBytes + (RangeDescriptorBytes * (long)_options.MaxCopySegmentDescriptors)
            || c.DataOut.Length < length)
        {
            return c.Fail(SenseData.ParameterListLengthError, length);
        }

        var list = c.DataOut[..(int)length];

        // Byte 2: RTV bit 1, IMMED bit 0; INACTIVITY TIMEOUT bytes 4-7; ROD TYPE bytes 8-11;
        // BLOCK DEVICE RANGE DESCRIPTOR LIST LENGTH bytes 14-15.
        var rodType = BinaryPrimitives.ReadUInt32BigEndian(list[8..]);
        if ((list[2] & 0x02) != 0 && rodType is not (0 or RodTokenStore.AccessUponReference))
        {
            return c.Fail(SenseData.UnsupportedTokenType, length);
        }

        var inactivity = BinaryPrimitives.ReadUInt32BigEndian(list[4..]);
        if (inactivity > MaxTokenInactivity.TotalSeconds)
        {
            return c.Fail(SenseData.InvalidFieldInParameterList, length);
        }

        if (ParseRanges(list, 14, PopulateTokenHeaderBytes, out var ranges) is { } bad)
        {
            return c.Fail(bad, length);
        }

        Span<byte> creator = stackalloc byte[ExtendedCopyParameterList.TargetDescriptorBytes];
        WriteIdentificationDescriptor(creator);
        var timeout = inactivity == 0 ? DefaultTokenInactivity : TimeSpan.FromSeconds(inactivity);
        var token = Tokens.Create(this, ranges!, timeout, creator);
        if (token is null)
        {
            return c.Fail(SenseData.InsufficientResources, length);
        }

        nexus.HoldTokenResult(listId, new TokenCopyResult(ScsiOpcode.PopulateTokenServiceAction, 0x01, null, 0, token));
        return ScsiCommand.Good(0, length);
    }

    private ScsiResult WriteUsingToken(ScsiNexus nexus, in ScsiCommand c)
    {
        var listId = ReadUInt32(c.Cdb, 6);
        var length = (long)ReadUInt32(c.Cdb, 10);
        if (length == 0)
        {
            return ScsiCommand.Good();
        }

        if (length < WriteUsingTokenHeaderBytes || length > WriteUsingTokenHeaderBytes + (RangeDescriptorBytes * (long)_options.MaxCopySegmentDescriptors)
            || c.DataOut.Length < length)
        {
            return c.Fail(SenseData.ParameterListLengthError, length);
        }

        // Byte 2: DEL_TKN bit 1, IMMED bit 0; OFFSET INTO ROD bytes 8-15 (blocks); ROD TOKEN bytes
        // 16-527; BLOCK DEVICE RANGE DESCRIPTOR LIST LENGTH bytes 534-535.
        var list = c.DataOut[..(int)length];
        var deleteToken = (list[2] & 0x02) != 0;
        var offsetBlocks = BinaryPrimitives.ReadUInt64BigEndian(list[8..]);
        var tokenBytes = list.Slice(16, RodTokenStore.TokenBytes);
        if (ParseRanges(list, 534, WriteUsingTokenHeaderBytes, out var destination) is { } bad)
        {
            return c.Fail(bad, length);
        }

        if (BinaryPrimitives.ReadUInt32BigEndian(tokenBytes) == RodTokenStore.BlockDeviceZero)
        {
            return WriteZeroToken(nexus, c, listId, destination!, length);
        }

        var token = Tokens.Use(tokenBytes, out var problem);
        if (token is null)
        {
            return c.Fail(problem!.Value, length);
        }

        // A token is a bearer secret, but it still only copies from a unit this initiator could use.
        if (token.Source != this && !(CopyScope?.CopyTargets(nexus.Port).Contains(token.Source) ?? false))
        {
            return c.Fail(SenseData.RemoteTokenUsageNotSupported, length);
        }

        if (token.Source.BlockBytes != BlockBytes)
        {
            return c.Fail(SenseData.InvalidFieldInParameterList, length);
        }

        var plan = PairRanges(token, offsetBlocks, destination!, out var requested);
        if (!CheckCopyAccess(nexus, plan, out var refusal, out var conflict))
        {
            return conflict ? new ScsiResult(ScsiStatus.ReservationConflict, 0, 0, length) : c.Fail(refusal!.Value, length);
        }

        var result = RunCopy(plan, out var failure);
        if (deleteToken)
        {
            Tokens.Delete(tokenBytes);
        }

        var blocks = result.BytesCopied / BlockBytes;

        // SBC-3 5.41.1: a token holding fewer blocks than the destination ranges ask for writes what it
        // has; the status says so (04h: completed, residual) and the transfer count tells how much.
        var status = failure is not null ? (byte)0x02 : blocks < requested ? (byte)0x04 : (byte)0x01;
        nexus.HoldTokenResult(listId, new TokenCopyResult(ScsiOpcode.WriteUsingTokenServiceAction, status, failure is { } f ? SenseBytes(f) : null, blocks, null));
        return failure is { } error ? c.Fail(error, length) : ScsiCommand.Good(0, length);
    }

    /// <summary>SBC-3 4.26.2: the block device zero ROD token writes zeros; a thin volume deallocates (LBPRZ=1).</summary>
    private ScsiResult WriteZeroToken(ScsiNexus nexus, in ScsiCommand c, uint listId, CopyRange[] destination, long length)
    {
        if (WriteProtection is { } protection)
        {
            return c.Fail(protection, length);
        }

        long blocks = 0;
        foreach (var range in destination)
        {
            Device.WriteZeroes((long)range.Lba * BlockBytes, (long)range.Blocks * BlockBytes, mayUnmap: true);
            blocks += range.Blocks;
        }

        nexus.HoldTokenResult(listId, new TokenCopyResult(ScsiOpcode.WriteUsingTokenServiceAction, 0x01, null, blocks, null));
        return ScsiCommand.Good(0, length);
    }

    /// <summary>
    /// Block device range descriptors (SBC-3 5.9.3: LBA bytes 0-7, NUMBER OF LOGICAL BLOCKS bytes 8-11)
    /// after the header; every range on this unit, at most the per-command count and bytes.
    /// </summary>
    private SenseData? ParseRanges(ReadOnlySpan<byte> list, int lengthOffset, int headerBytes, out CopyRange[]? ranges)
    {
        ranges = null;
        var listBytes = BinaryPrimitives.ReadUInt16BigEndian(list[lengthOffset..]);
        if (listBytes == 0 || listBytes % RangeDescriptorBytes != 0 || listBytes / RangeDescriptorBytes > _options.MaxCopySegmentDescriptors)
        {
            return SenseData.InvalidFieldInParameterList;
        }

        if (headerBytes + listBytes > list.Length)
        {
            return SenseData.ParameterListLengthError;
        }

        var result = new CopyRange[listBytes / RangeDescriptorBytes];
        long total = 0;
        for (var i = 0; i < result.Length; i++)
        {
            var d = list.Slice(headerBytes + (i * RangeDescriptorBytes), RangeDescriptorBytes);
            result[i] = new CopyRange(BinaryPrimitives.ReadUInt64BigEndian(d), BinaryPrimitives.ReadUInt32BigEndian(d[8..]));
            if (!InRange(result[i].Lba, result[i].Blocks))
            {
                return SenseData.LbaOutOfRange;
            }

            total += result[i].Blocks;
        }

        // MAXIMUM TOKEN TRANSFER SIZE in the Block Device ROD Token Limits descriptor.
        if (total * BlockBytes > _options.MaxCopyBytes)
        {
            return SenseData.InvalidFieldInParameterList;
        }

        ranges = result;
        return null;
    }

    /// <summary>Pairs the token's blocks, from OFFSET INTO ROD on, with the destination ranges, in order.</summary>
    private List<PlannedSegment> PairRanges(RodToken token, ulong offsetBlocks, CopyRange[] destination, out long requested)
    {
        var plan = new List<PlannedSegment>();
        requested = destination.Sum(r => (long)r.Blocks);
        var source = token.Ranges.Where(r => r.Blocks > 0).ToList();
        var si = 0;
        ulong sourceDone = 0;

        // Skip OFFSET INTO ROD blocks of the token.
        for (var skip = offsetBlocks; si < source.Count && skip > 0;)
        {
            var step = Math.Min(skip, source[si].Blocks - sourceDone);
            sourceDone += step;
            skip -= step;
            if (sourceDone == source[si].Blocks)
            {
                si++;
                sourceDone = 0;
            }
        }

        foreach (var d in destination)
        {
            ulong destinationDone = 0;
            while (destinationDone < d.Blocks && si < source.Count)
            {
                var n = Math.Min(d.Blocks - destinationDone, source[si].Blocks - sourceDone);
                plan.Add(new PlannedSegment(
                    token.Source,
                    (long)(source[si].Lba + sourceDone) * BlockBytes,
                    this,
                    (long)(d.Lba + destinationDone) * BlockBytes,
                    (long)n * BlockBytes));
                sourceDone += n;
                destinationDone += n;
                if (sourceDone == source[si].Blocks)
                {
                    si++;
                    sourceDone = 0;
                }
            }
        }

        return plan;
    }

    private static ScsiResult ReceiveRodTokenInformation(ScsiNexus nexus, in ScsiCommand c)
    {
        // SPC-4 6.19.1: LIST IDENTIFIER bytes 2-5, ALLOCATION LENGTH bytes 10-13.
        var listId = ReadUInt32(c.Cdb, 2);
        var allocation = (int)Math.Min(ReadUInt32(c.Cdb, 10), int.MaxValue);
        if (!nexus.HeldTokenResults.Remove(listId, out var result))
        {
            return c.Fail(SenseData.InvalidFieldInCdbAt(2));
        }

        // SPC-4 6.19.2: 32 bytes of status, the sense of a failure, ROD TOKEN DESCRIPTORS LENGTH, then
        // for POPULATE TOKEN two reserved bytes and the token.
        var senseBytes = result.Sense?.Length ?? 0;
        var tokenBytes = result.Token is null ? 0 : 2 + RodTokenStore.TokenBytes;
        var total = 32 + senseBytes + 4 + tokenBytes;
        var data = new byte[total];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)(total - 4));
        data[4] = result.ServiceAction;
        data[5] = result.Status;

        // EXTENDED COPY COMPLETION STATUS: the SCSI status the command ended with.
        data[12] = result.Sense is null ? (byte)ScsiStatus.Good : (byte)ScsiStatus.CheckCondition;
        data[13] = (byte)senseBytes;
        data[14] = (byte)senseBytes;

        // TRANSFER COUNT UNITS F1h: logical blocks of the destination.
        data[15] = 0xF1;
        BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(16), (ulong)result.BlocksTransferred);
        result.Sense?.CopyTo(data, 32);
        BinaryPrimitives.WriteUInt32BigEndian(data.AsSpan(32 + senseBytes), (uint)tokenBytes);
        result.Token?.CopyTo(data, 32 + senseBytes + 4 + 2);
        return c.ReturnData(data, allocation);
    }

    /// <summary>An identification CSCD descriptor (E4h) naming this unit by NAA, as a ROD token's creator.</summary>
    private void WriteIdentificationDescriptor(Span<byte> d)
    {
        d.Clear();
        d[0] = ExtendedCopyParameterList.IdentificationDescriptorType;
        d[4] = 0x01;
        d[5] = 0x03;
        d[7] = NaaDesignatorBytes;
        WriteNaaDesignator(d.Slice(8, NaaDesignatorBytes));
        d[29] = (byte)(BlockBytes >> 16);
        d[30] = (byte)(BlockBytes >> 8);
        d[31] = (byte)BlockBytes;
    }

    private static byte[] SenseBytes(SenseData sense)
    {
        var bytes = new byte[SenseData.FixedFormatLengthBytes];
        sense.WriteFixedTo(bytes);
        return bytes;
    }
}
