using System.Buffers.Binary;
using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

public sealed class ExtendedCopyTests
{
    private const int Block = 512;

    [Fact]
    public void ExtendedCopy_WithinOneUnit_CopiesTheRange_AndCopyStatusReportsIt()
    {
        var h = new ScsiHarness();
        var data = Pattern(8 * Block, 1);
        h.Memory.Write(0, data, false);

        var list = ParameterList(listId: 7, [Naa(h)], [new Segment(0, 0, 8, 0, 100)]);
        Assert.True(h.Run(XcopyCdb(list.Length), list).IsGood);

        Assert.Equal(data, ReadBack(h.Memory, 100 * Block, data.Length));

        // COPY STATUS for list 7: completed without errors, one segment, 4096 bytes; then it is gone.
        Assert.True(h.Run(ReceiveCdb(0x00, 7), dataInBytes: 64).IsGood);
        Assert.Equal(0x01, h.DataIn[4]);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(h.DataIn.AsSpan(5)));
        Assert.Equal(0, h.DataIn[7]);
        Assert.Equal(8u * Block, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(8)));
        h.AssertCheckCondition(h.Run(ReceiveCdb(0x00, 7), dataInBytes: 64), SenseData.InvalidFieldInCdbAt(2));
    }

    [Fact]
    public void ExtendedCopy_ListIdUsageDiscard_HoldsNoStatus()
    {
        var h = new ScsiHarness();
        var list = ParameterList(listId: 3, [Naa(h)], [new Segment(0, 0, 1, 0, 1)], usage: 2);

        Assert.True(h.Run(XcopyCdb(list.Length), list).IsGood);
        h.AssertCheckCondition(h.Run(ReceiveCdb(0x00, 3), dataInBytes: 64), SenseData.InvalidFieldInCdbAt(2));
    }

    [Theory]
    [InlineData(0, 4)] // destination starts inside the source: copied from the end backwards
    [InlineData(4, 0)] // source starts inside the destination: copied forwards
    public void ExtendedCopy_OverlappingRangesInOneUnit_CopyAsIfThroughABuffer(int sourceLba, int destinationLba)
    {
        // 5,000 blocks span several 1 MiB copy chunks, so a chunk order that reads overwritten data shows.
        const int blocks = 5000;
        var h = new ScsiHarness();
        var data = Pattern(blocks * Block, 9);
        h.Memory.Write((long)sourceLba * Block, data, false);

        var list = ParameterList(1, [Naa(h)], [new Segment(0, 0, blocks, (ulong)sourceLba, (ulong)destinationLba)]);
        Assert.True(h.Run(XcopyCdb(list.Length), list).IsGood);

        Assert.Equal(data, ReadBack(h.Memory, (long)destinationLba * Block, data.Length));
    }

    [Fact]
    public void ExtendedCopy_BetweenUnitsInScope_CopiesFromSourceToDestination()
    {
        var source = new ScsiHarness();
        var destination = new ScsiHarness();
        var receiver = new ScsiHarness(scope: new Scope(source.Unit, destination.Unit));
        var data = Pattern(16 * Block, 3);
        source.Memory.Write(32 * Block, data, false);

        var list = ParameterList(1, [Naa(source), Naa(destination)], [new Segment(0, 1, 16, 32, 64)]);
        Assert.True(receiver.Run(XcopyCdb(list.Length), list).IsGood);

        Assert.Equal(data, ReadBack(destination.Memory, 64 * Block, data.Length));
        Assert.All(ReadBack(receiver.Memory, 0, 128 * Block), b => Assert.Equal(0, b));
    }

    [Fact]
    public void ExtendedCopy_UnitOutsideTheScope_IsNotReachable()
    {
        var other = new ScsiHarness();
        var h = new ScsiHarness();
        other.Memory.Write(0, Pattern(Block, 5), false);

        var list = ParameterList(1, [Naa(other), Naa(h)], [new Segment(0, 1, 1, 0, 0)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(list.Length), list), SenseData.CopyTargetNotReachable(0));
        Assert.All(ReadBack(h.Memory, 0, Block), b => Assert.Equal(0, b));
    }

    [Fact]
    public void ExtendedCopy_IntoReadOnlyUnit_IsWriteProtected_AndCopiesNothing()
    {
        // A snapshot, a read-only export and a replica all reach the unit as a read-only device.
        var snapshot = new ScsiHarness(device: new MemoryBlockDevice(16L << 20, Block, isReadOnly: true));
        var h = new ScsiHarness(scope: new Scope(snapshot.Unit));
        h.Memory.Write(0, Pattern(Block, 2), false);

        var list = ParameterList(1, [Naa(h), Naa(snapshot)], [new Segment(0, 1, 1, 0, 0)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(list.Length), list), SenseData.WriteProtected);
        Assert.All(ReadBack(snapshot.Memory, 0, Block), b => Assert.Equal(0, b));

        // Reading from it is fine.
        var back = ParameterList(1, [Naa(snapshot), Naa(h)], [new Segment(0, 1, 1, 0, 9)]);
        Assert.True(h.Run(XcopyCdb(back.Length), back).IsGood);
    }

    [Fact]
    public void ExtendedCopy_UnderSoftwareWriteProtect_IsRefused()
    {
        var h = new ScsiHarness();
        SetSoftwareWriteProtect(h);

        var list = ParameterList(1, [Naa(h)], [new Segment(0, 0, 1, 0, 1)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(list.Length), list), SenseData.SoftwareWriteProtected);
    }

    [Fact]
    public void ExtendedCopy_DestinationReservedByAnotherInitiator_IsAReservationConflict()
    {
        var destination = new ScsiHarness();
        var h = new ScsiHarness(scope: new Scope(destination.Unit));
        var holder = destination.Unit.OpenNexus("iqn.2026-11.test:holder,i,0x1");
        Assert.True(destination.Run([ScsiOpcode.Reserve6, 0, 0, 0, 0, 0], nexus: holder).IsGood);

        var list = ParameterList(1, [Naa(h), Naa(destination)], [new Segment(0, 1, 1, 0, 0)]);
        Assert.Equal(ScsiStatus.ReservationConflict, h.Run(XcopyCdb(list.Length), list).Status);
    }

    [Fact]
    public void ExtendedCopy_SecondSegmentOutOfRange_CopiesNothing()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        h.Memory.Write(0, Pattern(Block, 4), false);
        var capacity = (ulong)(1 << 20) / Block;

        var list = ParameterList(1, [Naa(h)], [new Segment(0, 0, 1, 0, 10), new Segment(0, 0, 2, 0, capacity - 1)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(list.Length), list), SenseData.CopyTargetNotReachable(1));
        Assert.All(ReadBack(h.Memory, 10 * Block, Block), b => Assert.Equal(0, b));
    }

    [Fact]
    public void ExtendedCopy_SegmentIndexPastTheTargetList_IsNotReachable()
    {
        var h = new ScsiHarness();
        var list = ParameterList(1, [Naa(h)], [new Segment(0, 1, 1, 0, 0)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(list.Length), list), SenseData.CopyTargetNotReachable(0));
    }

    [Fact]
    public void ExtendedCopy_MoreBytesThanTheCap_IsRefusedWhole()
    {
        var h = new ScsiHarness(options: new ScsiLogicalUnitOptions { MaxCopyBytes = 64 * Block });
        h.Memory.Write(0, Pattern(Block, 6), false);

        var list = ParameterList(1, [Naa(h)], [new Segment(0, 0, 40, 0, 100), new Segment(0, 0, 40, 0, 200)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(list.Length), list), SenseData.InvalidFieldInParameterList);
        Assert.All(ReadBack(h.Memory, 100 * Block, Block), b => Assert.Equal(0, b));
    }

    [Fact]
    public void ExtendedCopy_DescriptorLimits_ReturnTheirSenseCodes()
    {
        var h = new ScsiHarness(options: new ScsiLogicalUnitOptions { MaxCopyTargetDescriptors = 2, MaxCopySegmentDescriptors = 2 });
        var naa = Naa(h);

        var targets = ParameterList(1, [naa, naa, naa], [new Segment(0, 0, 1, 0, 1)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(targets.Length), targets), SenseData.TooManyTargetDescriptors);

        var segments = ParameterList(1, [naa], [.. Enumerable.Repeat(new Segment(0, 0, 1, 0, 1), 3)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(segments.Length), segments), SenseData.TooManySegmentDescriptors);

        var truncated = ParameterList(1, [naa], [new Segment(0, 0, 1, 0, 1)]);
        h.AssertCheckCondition(h.Run(XcopyCdb(truncated.Length - 1), truncated[..^1]), SenseData.ParameterListLengthError);

        var streamSegment = ParameterList(1, [naa], [new Segment(0, 0, 1, 0, 1)]);
        streamSegment[16 + 32] = 0x03;
        h.AssertCheckCondition(h.Run(XcopyCdb(streamSegment.Length), streamSegment), SenseData.UnsupportedSegmentDescriptorType);

        var portName = ParameterList(1, [naa], [new Segment(0, 0, 1, 0, 1)]);
        portName[16] = 0xE0;
        h.AssertCheckCondition(h.Run(XcopyCdb(portName.Length), portName), SenseData.UnsupportedTargetDescriptorType);

        Assert.True(h.Run(XcopyCdb(0)).IsGood);
    }

    [Fact]
    public void ExtendedCopy_TargetFailsMidCopy_IsCopyAborted_AndStatusSaysCompletedWithErrors()
    {
        var h = new ScsiHarness(device: new FailingWrites(new MemoryBlockDevice(16L << 20, Block), failAtOffset: 300 * Block));
        var list = ParameterList(9, [Naa(h)], [new Segment(0, 0, 4, 0, 100), new Segment(0, 0, 4, 0, 300)]);

        h.AssertCheckCondition(h.Run(XcopyCdb(list.Length), list), SenseData.CopyTargetFailure(1));

        Assert.True(h.Run(ReceiveCdb(0x00, 9), dataInBytes: 64).IsGood);
        Assert.Equal(0x02, h.DataIn[4]);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(h.DataIn.AsSpan(5)));
        Assert.Equal(4u * Block, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(8)));
    }

    [Fact]
    public void ReceiveCopyResults_OperatingParameters_ReportTheLimits()
    {
        var h = new ScsiHarness(options: new ScsiLogicalUnitOptions { MaxCopyTargetDescriptors = 5, MaxCopySegmentDescriptors = 6, MaxCopyDescriptorListBytes = 1000 });

        var result = h.Run(ReceiveCdb(0x03, 0), dataInBytes: 1024);

        Assert.True(result.IsGood);
        var d = h.DataIn.AsSpan(0, result.DataInBytes);
        Assert.Equal((uint)(d.Length - 4), BinaryPrimitives.ReadUInt32BigEndian(d));
        Assert.Equal(5, BinaryPrimitives.ReadUInt16BigEndian(d[8..]));
        Assert.Equal(6, BinaryPrimitives.ReadUInt16BigEndian(d[10..]));
        Assert.Equal(1000u, BinaryPrimitives.ReadUInt32BigEndian(d[12..]));
        Assert.Equal(65_535u * Block, BinaryPrimitives.ReadUInt32BigEndian(d[16..]));
        Assert.Equal(new byte[] { 0x02, 0xE4 }, d.Slice(44, d[43]).ToArray());
    }

    [Fact]
    public void Inquiry_ThirdPartyCopyPage_ListsTheCopyCommandsAndDescriptors()
    {
        var h = new ScsiHarness();

        var result = h.Run([ScsiOpcode.Inquiry, 1, 0x8F, 4, 0, 0], dataInBytes: 1024);

        Assert.True(result.IsGood);
        var page = h.DataIn.AsSpan(0, result.DataInBytes);
        Assert.Equal(0x8F, page[1]);
        Assert.Equal(page.Length - 4, BinaryPrimitives.ReadUInt16BigEndian(page[2..]));

        var types = new List<int>();
        for (var p = 4; p < page.Length; p += 4 + BinaryPrimitives.ReadUInt16BigEndian(page[(p + 2)..]))
        {
            var type = BinaryPrimitives.ReadUInt16BigEndian(page[p..]);
            types.Add(type);
            if (type == 0x0001)
            {
                // Supported Commands: 83h with 00h (LID1), 10h, 11h (tokens); 84h with 00h, 03h, 07h.
                Assert.Equal(new byte[] { 0x83, 3, 0x00, 0x10, 0x11, 0x84, 3, 0x00, 0x03, 0x07 }, page.Slice(p + 5, page[p + 4]).ToArray());
            }
        }

        Assert.Equal(new[] { 0x0000, 0x0001, 0x0004, 0x0008, 0x000C, 0x0108, 0x8001 }, types);
    }

    internal readonly record struct Segment(ushort Source, ushort Destination, ushort Blocks, ulong SourceLba, ulong DestinationLba);

    /// <summary>The unit's NAA designator, read from its Device Identification VPD page as an initiator would.</summary>
    internal static byte[] Naa(ScsiHarness h)
    {
        var result = h.Run([ScsiOpcode.Inquiry, 1, 0x83, 1, 0, 0], dataInBytes: 256);
        Assert.True(result.IsGood);
        Assert.Equal(0x03, h.DataIn[5] & 0x0F);
        return h.DataIn.AsSpan(8, h.DataIn[7]).ToArray();
    }

    /// <summary>An EXTENDED COPY LID1 parameter list (SPC-4 6.4.3) of identification CSCDs and block-to-block segments.</summary>
    internal static byte[] ParameterList(byte listId, byte[][] targets, Segment[] segments, int usage = 0, int blockBytes = Block)
    {
        var list = new byte[16 + (32 * targets.Length) + (28 * segments.Length)];
        list[0] = listId;
        list[1] = (byte)(usage << 3);
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(2), (ushort)(32 * targets.Length));
        BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(8), (uint)(28 * segments.Length));
        var p = 16;
        foreach (var naa in targets)
        {
            list[p] = 0xE4;
            list[p + 4] = 0x01;
            list[p + 5] = 0x03;
            list[p + 7] = (byte)naa.Length;
            naa.CopyTo(list, p + 8);
            list[p + 29] = (byte)(blockBytes >> 16);
            list[p + 30] = (byte)(blockBytes >> 8);
            list[p + 31] = (byte)blockBytes;
            p += 32;
        }

        foreach (var s in segments)
        {
            list[p] = 0x02;
            BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(p + 2), 0x18);
            BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(p + 4), s.Source);
            BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(p + 6), s.Destination);
            BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(p + 10), s.Blocks);
            BinaryPrimitives.WriteUInt64BigEndian(list.AsSpan(p + 12), s.SourceLba);
            BinaryPrimitives.WriteUInt64BigEndian(list.AsSpan(p + 20), s.DestinationLba);
            p += 28;
        }

        return list;
    }

    internal static byte[] XcopyCdb(int listLength)
    {
        var cdb = new byte[16];
        cdb[0] = ScsiOpcode.ExtendedCopy;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), (uint)listLength);
        return cdb;
    }

    internal static byte[] ReceiveCdb(byte serviceAction, byte listId)
    {
        var cdb = new byte[16];
        cdb[0] = ScsiOpcode.ReceiveCopyResults;
        cdb[1] = serviceAction;
        cdb[2] = listId;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), 1024);
        return cdb;
    }

    internal static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    internal static byte[] ReadBack(IBlockDevice device, long offset, int length)
    {
        var data = new byte[length];
        device.Read(offset, data);
        return data;
    }

    private static void SetSoftwareWriteProtect(ScsiHarness h)
    {
        // MODE SELECT (6) with the control mode page (0Ah), SWP (byte 4 bit 3) set.
        var page = new byte[4 + 12];
        page[4] = 0x0A;
        page[5] = 0x0A;
        page[7] = 0x10;
        page[8] = 0x08;
        page[12] = 0xFF;
        page[13] = 0xFF;
        Assert.True(h.Run([ScsiOpcode.ModeSelect6, 0x10, 0, 0, (byte)page.Length, 0], page).IsGood);
        Assert.True(h.Unit.IsSoftwareWriteProtected);
    }

    internal sealed class Scope(params ScsiLogicalUnit[] units) : IScsiCopyScope
    {
        public RodTokenStore Tokens { get; init; } = new();

        public IEnumerable<ScsiLogicalUnit> CopyTargets(string initiatorPort) => units;
    }

    /// <summary>Fails writes that reach one offset, as a full pool or a failing store would.</summary>
    internal sealed class FailingWrites(IBlockDevice inner, long failAtOffset) : ForwardingDevice(inner)
    {
        public override void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
        {
            if (offsetBytes <= failAtOffset && failAtOffset < offsetBytes + source.Length)
            {
                throw new StorageException(StorageError.IoError, "injected write failure");
            }

            Inner.Write(offsetBytes, source, forceUnitAccess);
        }
    }
}
