using System.Buffers;
using System.Buffers.Binary;

namespace Tidemark.Scsi;

/// <remarks>
/// Copy offload (SPC-4 6.4 EXTENDED COPY LID1, 6.18 RECEIVE COPY RESULTS): this unit is the copy
/// manager; the copy targets are units named by their NAA designator, found in
/// <see cref="CopyScope"/>. The data moves inside the server and never crosses the network. Every
/// segment is checked before the first byte is copied, so a refused command changes nothing.
/// </remarks>
public sealed partial class ScsiLogicalUnit
{
    /// <summary>Bytes moved per device read and write while copying: one pooled buffer, whole blocks of 512 and 4096.</summary>
    private const int CopyChunkBytes = 1 << 20;

    /// <summary>
    /// Where EXTENDED COPY looks for copy targets other than this unit. The server gives each unit
    /// the units of the same export; without a scope a unit copies only within itself.
    /// </summary>
    public IScsiCopyScope? CopyScope { get; init; }

    /// <summary>SPC-4 6.4.6.5: BLOCK DEVICE NUMBER OF BLOCKS is 16 bits, so one segment covers at most 65,535 blocks.</summary>
    private long MaxSegmentBytes => Math.Min(_options.MaxCopyBytes, 65_535L * BlockBytes);

    /// <summary>Opcode 83h: EXTENDED COPY (LID1), POPULATE TOKEN or WRITE USING TOKEN by service action.</summary>
    private ScsiResult ThirdPartyCopyOut(ScsiNexus nexus, in ScsiCommand c) => (c.Cdb[1] & 0x1F) switch
    {
        ScsiOpcode.ExtendedCopyLid1ServiceAction => ExtendedCopy(nexus, c),
        ScsiOpcode.PopulateTokenServiceAction => PopulateToken(nexus, c),
        ScsiOpcode.WriteUsingTokenServiceAction => WriteUsingToken(nexus, c),
        _ => c.Fail(SenseData.InvalidFieldInCdbAt(1), ReadUInt32(c.Cdb, 10)),
    };

    private ScsiResult ExtendedCopy(ScsiNexus nexus, in ScsiCommand c)
    {
        // SPC-4 6.4.1: SERVICE ACTION byte 1 bits 4-0 (00h: LID1), PARAMETER LIST LENGTH bytes 10-13.
        var listLength = (long)ReadUInt32(c.Cdb, 10);

        // SPC-4 6.4.1: a PARAMETER LIST LENGTH of zero copies nothing and is not an error.
        if (listLength == 0)
        {
            return ScsiCommand.Good();
        }

        if (listLength > ExtendedCopyParameterList.HeaderBytes + _options.MaxCopyDescriptorListBytes || c.DataOut.Length < listLength)
        {
            return c.Fail(SenseData.ParameterListLengthError, listLength);
        }

        if (ExtendedCopyParameterList.TryParse(c.DataOut[..(int)listLength], _options, out var list) is { } bad)
        {
            return c.Fail(bad, listLength);
        }

        var plan = PlanCopy(nexus, list!, out var refusal, out var conflict);
        if (conflict)
        {
            return new ScsiResult(ScsiStatus.ReservationConflict, 0, 0, listLength);
        }

        if (refusal is { } sense)
        {
            return c.Fail(sense, listLength);
        }

        var result = RunCopy(plan!, out var failure);
        if (list!.ListIdUsage == ExtendedCopyParameterList.ListIdUsageHold)
        {
            nexus.HoldCopyResult(list.ListId, result);
        }

        return failure is { } error ? c.Fail(error, listLength) : ScsiCommand.Good(0, listLength);
    }

    /// <summary>One checked segment: byte offsets on resolved units.</summary>
    private readonly record struct PlannedSegment(ScsiLogicalUnit Source, long SourceOffset, ScsiLogicalUnit Destination, long DestinationOffset, long Bytes);

    /// <summary>
    /// Resolves every segment to units and byte ranges and checks them all, so nothing is copied
    /// unless everything can be: target indexes, reachability, block lengths, ranges, the byte cap,
    /// write protection, reservations and a sanitize in progress on every unit involved.
    /// </summary>
    private List<PlannedSegment>? PlanCopy(ScsiNexus nexus, ExtendedCopyParameterList list, out SenseData? refusal, out bool conflict)
    {
        refusal = null;
        conflict = false;
        var units = new ScsiLogicalUnit?[list.Targets.Count];
        for (var i = 0; i < units.Length; i++)
        {
            units[i] = ResolveCopyTarget(nexus.Port, list.Targets[i]);
        }

        var plan = new List<PlannedSegment>(list.Segments.Count);
        long total = 0;
        for (var i = 0; i < list.Segments.Count; i++)
        {
            var s = list.Segments[i];
            var segment = (uint)i;
            var source = s.Source < units.Length ? units[s.Source] : null;
            var destination = s.Destination < units.Length ? units[s.Destination] : null;

            // SPC-4 6.4.6.1: an index past the CSCD list, or a designator naming no unit this initiator
            // can reach, is a copy target that cannot be reached.
            if (source is null || destination is null)
            {
                refusal = SenseData.CopyTargetNotReachable(segment);
                return null;
            }

            var bytes = (long)s.Blocks * (s.DestinationCount ? destination.BlockBytes : source.BlockBytes);
            if (bytes % source.BlockBytes != 0 || bytes % destination.BlockBytes != 0)
            {
                refusal = SenseData.InvalidFieldInParameterList;
                return null;
            }

            if (!source.InRange(s.SourceLba, (ulong)(bytes / source.BlockBytes))
                || !destination.InRange(s.DestinationLba, (ulong)(bytes / destination.BlockBytes)))
            {
                refusal = SenseData.CopyTargetNotReachable(segment);
                return null;
            }

            total += bytes;
            if (bytes > MaxSegmentBytes || total > _options.MaxCopyBytes)
            {
                // Reported as MAXIMUM SEGMENT LENGTH in the operating parameters and the VPD page.
                refusal = SenseData.InvalidFieldInParameterList;
                return null;
            }

            plan.Add(new PlannedSegment(source, (long)s.SourceLba * source.BlockBytes, destination, (long)s.DestinationLba * destination.BlockBytes, bytes));
        }

        return CheckCopyAccess(nexus, plan, out refusal, out conflict) ? plan : null;
    }

    /// <summary>
    /// Whether the initiator may read every source and write every destination of the plan right now:
    /// write protection (read-only export, snapshot, replica, SWP), reservations and a sanitize.
    /// </summary>
    private bool CheckCopyAccess(ScsiNexus nexus, List<PlannedSegment> plan, out SenseData? refusal, out bool conflict)
    {
        refusal = null;
        conflict = false;
        foreach (var unit in plan.Select(p => p.Source).Concat(plan.Select(p => p.Destination)).Distinct())
        {
            var writes = plan.Any(p => p.Destination == unit);
            if (writes && unit.WriteProtection is { } protection)
            {
                refusal = protection;
                return false;
            }

            // The copy reads and writes each unit as the initiator itself would, so a reservation that
            // would stop its READ or WRITE stops the copy too (SPC-4 5.9 and 5.17.7.2).
            var key = unit == this ? nexus.Key : unit.KnownNexusKey(nexus.Port);
            var opcode = writes ? ScsiOpcode.Write16 : ScsiOpcode.Read16;
            if ((unit.IsReservedByOther(key) && !AllowedUnderReservation(opcode)) || unit.PersistentReservationConflict(key, opcode))
            {
                conflict = true;
                return false;
            }

            if (unit != this && unit.Sanitizing)
            {
                refusal = SenseData.SanitizeInProgress;
                return false;
            }
        }

        return true;
    }

    /// <summary>This unit, or the unit in <see cref="CopyScope"/> whose NAA designator the descriptor names.</summary>
    private ScsiLogicalUnit? ResolveCopyTarget(string initiatorPort, CopyTargetDescriptor target)
    {
        // Designator type 3 (NAA) is what the Device Identification page offers and what initiators
        // (libiscsi, VMware) send. The descriptor's block length must be the unit's.
        if (target.DesignatorType != 0x03 || target.Designator.Length != NaaDesignatorBytes)
        {
            return null;
        }

        Span<byte> naa = stackalloc byte[NaaDesignatorBytes];
        foreach (var unit in CopyScope?.CopyTargets(initiatorPort).Prepend(this) ?? [this])
        {
            unit.WriteNaaDesignator(naa);
            if (naa.SequenceEqual(target.Designator))
            {
                return target.BlockBytes == unit.BlockBytes ? unit : null;
            }
        }

        return null;
    }

    /// <summary>The reservation key this unit gave the port, or one that matches no registration or holder.</summary>
    private long KnownNexusKey(string port) => _nexusKeys.TryGetValue(port, out var key) ? key : long.MinValue;

    private CopyResult RunCopy(List<PlannedSegment> plan, out SenseData? failure)
    {
        failure = null;
        var entered = new List<ScsiLogicalUnit>();
        var buffer = ArrayPool<byte>.Shared.Rent(CopyChunkBytes);
        long copied = 0;
        var done = 0;
        try
        {
            // Counted in flight on every other unit too, so a SANITIZE there waits for this copy.
            foreach (var unit in plan.Select(p => p.Source).Concat(plan.Select(p => p.Destination)).Distinct().Where(u => u != this))
            {
                Interlocked.Increment(ref unit._inFlight);
                entered.Add(unit);
                if (unit.Sanitizing)
                {
                    failure = SenseData.SanitizeInProgress;
                    return new CopyResult(true, 0, 0);
                }
            }

            for (; done < plan.Count; done++)
            {
                var p = plan[done];
                try
                {
                    CopyRange(p.Source.Device, p.SourceOffset, p.Destination.Device, p.DestinationOffset, p.Bytes, buffer);
                }
                catch (StorageException)
                {
                    // SPC-4 6.4: an error on a copy target ends the copy with COPY ABORTED; the
                    // segments before this one are complete, this one may be partly copied.
                    failure = SenseData.CopyTargetFailure((uint)done);
                    return new CopyResult(true, (ushort)done, copied);
                }

                copied += p.Bytes;
            }

            return new CopyResult(false, (ushort)done, copied);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            foreach (var unit in entered)
            {
                Interlocked.Decrement(ref unit._inFlight);
            }
        }
    }

    /// <summary>
    /// Copies like memmove: when source and destination are the same device and the destination
    /// starts inside the source range, the chunks go from the end backwards, so no chunk is read
    /// after it was overwritten.
    /// </summary>
    private static void CopyRange(IBlockDevice source, long sourceOffset, IBlockDevice destination, long destinationOffset, long bytes, byte[] buffer)
    {
        var backwards = source.Id == destination.Id && destinationOffset > sourceOffset && destinationOffset < sourceOffset + bytes;
        for (long done = 0; done < bytes;)
        {
            var n = (int)Math.Min(buffer.Length, bytes - done);
            var at = backwards ? bytes - done - n : done;
            var chunk = buffer.AsSpan(0, n);
            source.Read(sourceOffset + at, chunk);
            destination.Write(destinationOffset + at, chunk, forceUnitAccess: false);
            done += n;
        }
    }

    private ScsiResult ReceiveCopyResults(ScsiNexus nexus, in ScsiCommand c)
    {
        // SPC-4 6.18.1: SERVICE ACTION byte 1 bits 4-0, LIST IDENTIFIER byte 2, ALLOCATION LENGTH bytes 10-13.
        var action = c.Cdb[1] & 0x1F;
        var listId = c.Cdb[2];
        var allocation = (int)Math.Min(ReadUInt32(c.Cdb, 10), int.MaxValue);
        switch (action)
        {
            case ScsiOpcode.CopyStatusServiceAction:
                // SPC-4 6.18.3: status is kept only for a LIST ID USAGE 00b command of this nexus;
                // any other list identifier is an invalid field. Once reported, it is discarded.
                if (!nexus.HeldCopyResults.Remove(listId, out var result))
                {
                    return c.Fail(SenseData.InvalidFieldInCdbAt(2));
                }

                Span<byte> status = stackalloc byte[12];
                status.Clear();
                BinaryPrimitives.WriteUInt32BigEndian(status, 8);

                // COPY MANAGER STATUS 01h completed without errors, 02h completed with errors (HDD 0).
                status[4] = result.Failed ? (byte)0x02 : (byte)0x01;
                BinaryPrimitives.WriteUInt16BigEndian(status[5..], result.SegmentsProcessed);

                // TRANSFER COUNT UNITS: 00h bytes, 01h KiB, 02h MiB... the smallest unit that fits 32 bits.
                var units = 0;
                var count = result.BytesCopied;
                while (count > uint.MaxValue)
                {
                    count >>= 10;
                    units++;
                }

                status[7] = (byte)units;
                BinaryPrimitives.WriteUInt32BigEndian(status[8..], (uint)count);
                return c.ReturnData(status, allocation);

            case ScsiOpcode.ReceiveRodTokenInformationServiceAction:
                return ReceiveRodTokenInformation(nexus, c);

            case ScsiOpcode.OperatingParametersServiceAction:
                Span<byte> parameters = stackalloc byte[44 + 2];
                WriteOperatingParameters(parameters);
                return c.ReturnData(parameters, allocation);

            default:
                return c.Fail(SenseData.InvalidFieldInCdbAt(1));
        }
    }

    private void WriteOperatingParameters(Span<byte> b)
    {
        // SPC-4 6.18.4: AVAILABLE DATA, SNLID 0 (a list identifier is always used), then the limits.
        b.Clear();
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)(b.Length - 4));
        BinaryPrimitives.WriteUInt16BigEndian(b[8..], (ushort)_options.MaxCopyTargetDescriptors);
        BinaryPrimitives.WriteUInt16BigEndian(b[10..], (ushort)_options.MaxCopySegmentDescriptors);
        BinaryPrimitives.WriteUInt32BigEndian(b[12..], (uint)_options.MaxCopyDescriptorListBytes);
        BinaryPrimitives.WriteUInt32BigEndian(b[16..], (uint)MaxSegmentBytes);

        // MAXIMUM INLINE DATA LENGTH 0, HELD DATA LIMIT 0 (no segment type holds data), no stream devices.
        // TOTAL CONCURRENT COPIES and MAXIMUM CONCURRENT COPIES: one per nexus at a time, as commands
        // of one connection run one after another.
        BinaryPrimitives.WriteUInt16BigEndian(b[34..], 1);
        b[36] = 1;

        // DATA SEGMENT GRANULARITY (log2): a logical block.
        b[37] = (byte)System.Numerics.BitOperations.Log2((uint)BlockBytes);
        b[43] = 2;
        b[44] = ExtendedCopyParameterList.BlockToBlockSegmentType;
        b[45] = ExtendedCopyParameterList.IdentificationDescriptorType;
    }

    private int WriteThirdPartyCopy(Span<byte> b)
    {
        // SPC-4 7.8.17: a list of third-party copy descriptors, each TYPE (2), LENGTH (2), data
        // padded to a multiple of 4 bytes.
        b[1] = 0x8F;
        var p = 4;

        // Block Device ROD Token Limits (0000h, SBC-3 6.6.8.2): MAXIMUM RANGE DESCRIPTORS, MAXIMUM and
        // DEFAULT INACTIVITY TIMEOUT (seconds), MAXIMUM TOKEN TRANSFER SIZE and OPTIMAL TRANSFER COUNT (blocks).
        p += WriteCopyDescriptor(b[p..], 0x0000, 0x20, d =>
        {
            BinaryPrimitives.WriteUInt16BigEndian(d[6..], (ushort)_options.MaxCopySegmentDescriptors);
            BinaryPrimitives.WriteUInt32BigEndian(d[8..], (uint)MaxTokenInactivity.TotalSeconds);
            BinaryPrimitives.WriteUInt32BigEndian(d[12..], (uint)DefaultTokenInactivity.TotalSeconds);
            BinaryPrimitives.WriteUInt64BigEndian(d[16..], (ulong)(_options.MaxCopyBytes / BlockBytes));
            BinaryPrimitives.WriteUInt64BigEndian(d[24..], (ulong)(_options.MaxCopyBytes / BlockBytes));
        });

        // Supported Commands (0001h): EXTENDED COPY LID1 (83h/00h), RECEIVE COPY RESULTS (84h/00h, 03h).
        p += WriteCopyDescriptor(b[p..], 0x0001, 1 + _copyCommands.Length, d =>
        {
            d[0] = (byte)_copyCommands.Length;
            _copyCommands.CopyTo(d[1..]);
        });

        // Parameter Data (0004h): the limits of the LID1 parameter list.
        p += WriteCopyDescriptor(b[p..], 0x0004, 0x1C, d =>
        {
            BinaryPrimitives.WriteUInt16BigEndian(d[4..], (ushort)_options.MaxCopyTargetDescriptors);
            BinaryPrimitives.WriteUInt16BigEndian(d[6..], (ushort)_options.MaxCopySegmentDescriptors);
            BinaryPrimitives.WriteUInt32BigEndian(d[8..], (uint)_options.MaxCopyDescriptorListBytes);
        });

        // Supported Descriptors (0008h): block-to-block segments and identification CSCDs.
        p += WriteCopyDescriptor(b[p..], 0x0008, 3, d =>
        {
            d[0] = 2;
            d[1] = ExtendedCopyParameterList.BlockToBlockSegmentType;
            d[2] = ExtendedCopyParameterList.IdentificationDescriptorType;
        });

        // Supported CSCD Descriptor IDs (000Ch): none (the list is empty).
        p += WriteCopyDescriptor(b[p..], 0x000C, 2, _ => { });

        // Supported ROD Types (0108h): access-upon-reference tokens in and out; block device zero in.
        p += WriteCopyDescriptor(b[p..], 0x0108, 4 + 16, d =>
        {
            BinaryPrimitives.WriteUInt16BigEndian(d[2..], 16);
            BinaryPrimitives.WriteUInt32BigEndian(d[4..], RodTokenStore.AccessUponReference);
            d[8] = 0x02 | 0x01;
            BinaryPrimitives.WriteUInt32BigEndian(d[12..], RodTokenStore.BlockDeviceZero);
            d[16] = 0x02;
        });

        // General Copy Operations (8001h): concurrency and MAXIMUM SEGMENT LENGTH, DATA SEGMENT GRANULARITY.
        p += WriteCopyDescriptor(b[p..], 0x8001, 0x20, d =>
        {
            BinaryPrimitives.WriteUInt32BigEndian(d, 1);
            BinaryPrimitives.WriteUInt32BigEndian(d[4..], 1);
            BinaryPrimitives.WriteUInt32BigEndian(d[8..], (uint)MaxSegmentBytes);
            d[12] = (byte)System.Numerics.BitOperations.Log2((uint)BlockBytes);
        });

        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)(p - 4));
        return p;
    }

    /// <summary>The Supported Commands list: opcode, number of service actions, the service actions.</summary>
    private static readonly byte[] _copyCommands =
    [
        ScsiOpcode.ExtendedCopy, 3, ScsiOpcode.ExtendedCopyLid1ServiceAction, ScsiOpcode.PopulateTokenServiceAction, ScsiOpcode.WriteUsingTokenServiceAction,
        ScsiOpcode.ReceiveCopyResults, 3, ScsiOpcode.CopyStatusServiceAction, ScsiOpcode.OperatingParametersServiceAction, ScsiOpcode.ReceiveRodTokenInformationServiceAction,
    ];

    private delegate void DescriptorWriter(Span<byte> data);

    /// <summary>Writes one third-party copy descriptor; <paramref name="dataBytes"/> is padded to a multiple of 4.</summary>
    private static int WriteCopyDescriptor(Span<byte> b, ushort type, int dataBytes, DescriptorWriter write)
    {
        var padded = (dataBytes + 3) & ~3;
        b[..(4 + padded)].Clear();
        BinaryPrimitives.WriteUInt16BigEndian(b, type);
        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)padded);
        write(b.Slice(4, padded));
        return 4 + padded;
    }
}
