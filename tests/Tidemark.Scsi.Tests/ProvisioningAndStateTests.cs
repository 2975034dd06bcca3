using System.Buffers.Binary;

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
    public void WriteSame10_ZeroBlocks_ReturnsInvalidFieldInCdb()
    {
        var h = new ScsiHarness();
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb10(ScsiOpcode.WriteSame10, 0, 0), new byte[512]), SenseData.InvalidFieldInCdb);
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
