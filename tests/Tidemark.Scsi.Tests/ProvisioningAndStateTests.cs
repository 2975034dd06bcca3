using System.Buffers.Binary;
using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

public sealed class ProvisioningAndStateTests
{
    private static byte[] UnmapList(params (ulong Lba, uint Blocks)[] ranges)
    {
        var list = new byte[8 + (16 * ranges.Length)];
        BinaryPrimitives.WriteUInt16BigEndian(list, (ushort)(list.Length - 2));
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(2), (ushort)(16 * ranges.Length));
        for (var i = 0; i < ranges.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(list.AsSpan(8 + (16 * i)), ranges[i].Lba);
            BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(16 + (16 * i)), ranges[i].Blocks);
        }

        return list;
    }

    private static byte[] GetLbaStatusCdb(ulong lba)
    {
        var cdb = new byte[16];
        cdb[0] = ScsiOpcode.ServiceActionIn16;
        cdb[1] = ScsiOpcode.GetLbaStatusServiceAction;
        BinaryPrimitives.WriteUInt64BigEndian(cdb.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), 64);
        return cdb;
    }

    [Fact]
    public void Unmap_WrittenRange_BecomesHoleInGetLbaStatus()
    {
        var h = new ScsiHarness();
        h.Memory.Write(0, new byte[64 * 512].Select(_ => (byte)1).ToArray(), false);
        var list = UnmapList((0, 16));

        Assert.True(h.Run([ScsiOpcode.Unmap, 0, 0, 0, 0, 0, 0, 0, (byte)list.Length, 0], list).IsGood);
        var result = h.Run(GetLbaStatusCdb(0), dataInBytes: 64);

        Assert.True(result.IsGood);
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(8)));
        Assert.Equal(16u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(16)));
        Assert.Equal(1, h.DataIn[20]); // deallocated
        Assert.Equal(16ul, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(24)));
        Assert.Equal(0, h.DataIn[36]); // mapped
    }

    [Fact]
    public void Unmap_RangePastEnd_ReturnsLbaOutOfRangeAndChangesNothing()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        h.Memory.Write(0, Enumerable.Repeat((byte)1, 4096).ToArray(), false);
        var list = UnmapList((0, 8), (2047, 2));

        h.AssertCheckCondition(h.Run([ScsiOpcode.Unmap, 0, 0, 0, 0, 0, 0, 0, (byte)list.Length, 0], list), SenseData.LbaOutOfRange);
        var stored = new byte[4096];
        h.Memory.Read(0, stored);
        Assert.All(stored, b => Assert.Equal(1, b));
    }

    [Fact]
    public void GetLbaStatus_PastEnd_ReturnsLbaOutOfRange()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        h.AssertCheckCondition(h.Run(GetLbaStatusCdb(2048), dataInBytes: 64), SenseData.LbaOutOfRange);
    }

    [Fact]
    public void WriteSame16_UnmapWithZeroBlock_DeallocatesRange()
    {
        var h = new ScsiHarness();
        h.Memory.Write(0, Enumerable.Repeat((byte)9, 8192).ToArray(), false);

        Assert.True(h.Run(ScsiHarness.Cdb16(ScsiOpcode.WriteSame16, 0, 16, flags: 0x08), new byte[512]).IsGood);
        Span<AllocationRun> runs = stackalloc AllocationRun[4];
        Assert.Equal(1, h.Memory.GetAllocationStatus(0, 8192, runs));
        Assert.Equal(AllocationState.Hole, runs[0].State);
    }

    [Fact]
    public void WriteSame10_UnmapWithNonZeroBlock_DeallocatesAndReadsZeros()
    {
        // SBC-4: UNMAP=1 asks for an unmap operation; the data block does not turn it into a write.
        var h = new ScsiHarness();
        h.Memory.Write(0, Enumerable.Repeat((byte)9, 8192).ToArray(), false);

        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.WriteSame10, 0, 16, flags: 0x08), Enumerable.Repeat((byte)0xFF, 512).ToArray()).IsGood);

        Span<AllocationRun> runs = stackalloc AllocationRun[4];
        Assert.Equal(AllocationState.Hole, runs[..h.Memory.GetAllocationStatus(0, 8192, runs)][0].State);
        var stored = new byte[8192];
        h.Memory.Read(0, stored);
        Assert.All(stored, b => Assert.Equal(0, b));
    }

    [Fact]
    public void WriteSame10_Pattern_RepeatsBlock()
    {
        var h = new ScsiHarness();
        var pattern = Enumerable.Range(0, 512).Select(i => (byte)i).ToArray();

        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.WriteSame10, 4, 3), pattern).IsGood);
        var stored = new byte[3 * 512];
        h.Memory.Read(4 * 512, stored);
        Assert.Equal(pattern.Concat(pattern).Concat(pattern).ToArray(), stored);
    }

    [Fact]
    public void WriteSame_ZeroBlocks_WritesToTheLastBlock_OnlyWithinMaximumWriteSameLength()
    {
        // 16 MiB of 512-byte blocks: 32768 blocks, MAXIMUM WRITE SAME LENGTH 16384 (8 MiB).
        var h = new ScsiHarness();
        var pattern = Enumerable.Repeat((byte)0x5C, 512).ToArray();
        Assert.True(h.Run([ScsiOpcode.Inquiry, 0x01, 0xB0, 0, 64, 0], dataInBytes: 64).IsGood);
        Assert.Equal(0, h.DataIn[4] & 0x01); // WSNZ=0

        // From LBA 0 "to the end" is longer than the maximum: refused, nothing written.
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb10(ScsiOpcode.WriteSame10, 0, 0), pattern), SenseData.InvalidFieldInCdb);
        Span<AllocationRun> runs = stackalloc AllocationRun[2];
        Assert.Equal(1, h.Memory.GetAllocationStatus(0, 16L << 20, runs));
        Assert.Equal(AllocationState.Hole, runs[0].State);

        Assert.True(h.Run(ScsiHarness.Cdb16(ScsiOpcode.WriteSame16, 32768 - 100, 0), pattern).IsGood);
        var tail = new byte[101 * 512];
        h.Memory.Read((32768 - 101) * 512L, tail);
        Assert.All(tail.AsSpan(0, 512).ToArray(), b => Assert.Equal(0, b));
        Assert.All(tail.AsSpan(512).ToArray(), b => Assert.Equal(0x5C, b));

        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb10(ScsiOpcode.WriteSame10, 32768, 0), pattern), SenseData.LbaOutOfRange);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.WriteSame16, ulong.MaxValue, 0), pattern), SenseData.LbaOutOfRange);
    }

    [Fact]
    public void GetLbaStatus_InsideAMappedPhysicalBlock_FirstDescriptorStartsAtTheRequestedLba()
    {
        // libiscsi's GetLBAStatus.UnmapSingle asks for LBA i+1 and wants the first descriptor at i+8
        // (8 logical blocks per physical block). SBC-3 5.5 and sg_get_lba_status want the first
        // descriptor to contain the requested LBA: it starts at i+1 and is mapped.
        var h = new ScsiHarness();
        h.Memory.Write(0, Enumerable.Repeat((byte)'A', 264 * 512).ToArray(), false);
        var list = UnmapList((0, 8));
        Assert.True(h.Run([ScsiOpcode.Unmap, 0, 0, 0, 0, 0, 0, 0, (byte)list.Length, 0], list).IsGood);

        Assert.True(h.Run(GetLbaStatusCdb(9), dataInBytes: 64).IsGood);

        Assert.Equal(9ul, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(8)));
        Assert.Equal(0, h.DataIn[20]); // mapped
        Assert.True(h.Run([ScsiOpcode.ServiceActionIn16, ScsiOpcode.ReadCapacity16ServiceAction, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], dataInBytes: 32).IsGood);
        Assert.Equal(3, h.DataIn[13] & 0x0F); // the 4 KiB allocation unit stays the physical block
    }

    [Fact]
    public void GetLbaStatus_DeviceSplitsItsAnswer_RunsOfOneStateMergeIntoOneDescriptor()
    {
        // libiscsi's Sanitize.BlockErase wants a deallocated LUN covered by the descriptors of one reply.
        var device = new SplittingDevice(new Tidemark.TestKit.MemoryBlockDevice(16L << 20));
        var h = new ScsiHarness(device: device, options: new ScsiLogicalUnitOptions { LbaStatusScanTime = TimeSpan.FromMinutes(10) });
        device.Write(15L << 20, new byte[4096].Select(_ => (byte)1).ToArray(), false);

        Assert.True(h.Run(GetLbaStatusCdb(0), dataInBytes: 64).IsGood);

        Assert.Equal(8u + 48, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn) + 4);
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(8)));
        Assert.Equal((15u << 20) / 512, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(16)));
        Assert.Equal(1, h.DataIn[20]);
        Assert.Equal((15ul << 20) / 512, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(24)));
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(32)));
        Assert.Equal(0, h.DataIn[36]);
        Assert.Equal(((15ul << 20) + 4096) / 512, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(40)));
        Assert.Equal((1u << 20) / 512 - 8, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(48)));
        Assert.Equal(1, h.DataIn[52]);
        Assert.Equal(16, device.Calls);
    }

    [Fact]
    public void GetLbaStatus_ScanTimeSpent_StopsAfterTheFirstStretch()
    {
        // A zero budget: the reply covers what the first call answered, and the initiator asks again.
        var device = new SplittingDevice(new Tidemark.TestKit.MemoryBlockDevice(16L << 20));
        var h = new ScsiHarness(device: device, options: new ScsiLogicalUnitOptions { LbaStatusScanTime = TimeSpan.Zero });

        Assert.True(h.Run(GetLbaStatusCdb(0), dataInBytes: 64).IsGood);

        Assert.Equal(1, device.Calls);
        Assert.Equal(8u + 16, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn) + 4);
        Assert.Equal((1u << 20) / 512, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(16)));
    }

    /// <summary>Answers at most 1 MiB per allocation-status call, as the engine answers 256 MiB.</summary>
    private sealed class SplittingDevice(IBlockDevice inner) : ForwardingDevice(inner)
    {
        public int Calls { get; private set; }

        public override int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination)
        {
            Calls++;
            return Inner.GetAllocationStatus(offsetBytes, Math.Min(lengthBytes, 1 << 20), destination);
        }
    }

    [Fact]
    public void ReadDefectData_BothForms_ReturnAnEmptyValidList()
    {
        var h = new ScsiHarness();

        Assert.True(h.Run([ScsiOpcode.ReadDefectData10, 0, 0x18 | 0x05, 0, 0, 0, 0, 0, 32, 0], dataInBytes: 32).IsGood);
        Assert.Equal(new byte[] { 0, 0x1D, 0, 0 }, h.DataIn[..4]);

        var result = h.Run([ScsiOpcode.ReadDefectData12, 0x08, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], dataInBytes: 32);
        Assert.True(result.IsGood);
        Assert.Equal(8, result.DataInBytes);
        Assert.Equal(new byte[] { 0, 0x08, 0, 0, 0, 0, 0, 0 }, h.DataIn[..8]);
    }

    [Fact]
    public void SizeChanged_NextCommand_ReportsCapacityDataChangedOnce()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        h.Memory.Resize(2 << 20);

        h.AssertCheckCondition(h.Run([ScsiOpcode.TestUnitReady, 0, 0, 0, 0, 0]), SenseData.CapacityDataChanged);
        Assert.Equal((SenseKey.UnitAttention, (byte)0x2A, (byte)0x09), (h.LastSense().Key, h.LastSense().AdditionalSenseCode, h.LastSense().AdditionalSenseCodeQualifier));
        Assert.True(h.Run([ScsiOpcode.TestUnitReady, 0, 0, 0, 0, 0]).IsGood);
    }

    [Fact]
    public void Reset_EveryNexus_SeesUnitAttentionButInquiryDoesNot()
    {
        var h = new ScsiHarness();
        var other = h.Unit.OpenNexus();
        h.Unit.Reset();

        Assert.True(h.Run([ScsiOpcode.Inquiry, 0, 0, 0, 36, 0], dataInBytes: 36).IsGood);
        h.AssertCheckCondition(h.Run([ScsiOpcode.TestUnitReady, 0, 0, 0, 0, 0]), SenseData.LogicalUnitResetOccurred);
        h.AssertCheckCondition(h.Run([ScsiOpcode.TestUnitReady, 0, 0, 0, 0, 0], nexus: other), SenseData.LogicalUnitResetOccurred);
    }

    [Fact]
    public void Reserve6_OtherNexus_GetsReservationConflictUntilRelease()
    {
        var h = new ScsiHarness();
        var other = h.Unit.OpenNexus();

        Assert.True(h.Run([ScsiOpcode.Reserve6, 0, 0, 0, 0, 0]).IsGood);
        Assert.Equal(ScsiStatus.ReservationConflict, h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), dataInBytes: 512, nexus: other).Status);
        Assert.True(h.Run([ScsiOpcode.Inquiry, 0, 0, 0, 36, 0], dataInBytes: 36, nexus: other).IsGood);
        Assert.True(h.Run([ScsiOpcode.Release6, 0, 0, 0, 0, 0]).IsGood);
        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), dataInBytes: 512, nexus: other).IsGood);
    }

    [Fact]
    public void ReportLuns_ListsLunsInPeripheralAndFlatFormat()
    {
        var sense = new byte[18];
        var dataIn = new byte[64];
        byte[] cdb = [ScsiOpcode.ReportLuns, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0];
        var result = ScsiTargetCommands.ReportLuns(new ScsiCommand(cdb, [], dataIn, sense), [0, 300]);

        Assert.True(result.IsGood);
        Assert.Equal(16u, BinaryPrimitives.ReadUInt32BigEndian(dataIn));
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64BigEndian(dataIn.AsSpan(8)));
        Assert.Equal(0x41, dataIn[16]);
        Assert.Equal(0x2C, dataIn[17]);
        Assert.Equal(300, ScsiTargetCommands.DecodeLun(BinaryPrimitives.ReadUInt64BigEndian(dataIn.AsSpan(16))));
    }

    [Fact]
    public void Execute_SeededRandomCdbs_NeverThrows()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        var random = new Random(1124);
        byte[] opcodes = [.. Enumerable.Range(0, 256).Select(i => (byte)i)];
        for (var round = 0; round < 20000; round++)
        {
            var cdb = new byte[random.Next(0, 17)];
            random.NextBytes(cdb);
            if (cdb.Length > 0 && random.Next(2) == 0)
            {
                cdb[0] = opcodes[random.Next(opcodes.Length)];
            }

            var dataOut = new byte[random.Next(0, 3) * 512];
            random.NextBytes(dataOut);
            var result = h.Run(cdb, dataOut, dataInBytes: random.Next(0, 2) * 4096);
            Assert.True(result.DataInBytes <= 4096);
            Assert.True(result.SenseBytes <= SenseData.FixedFormatLengthBytes);
        }
    }
}
