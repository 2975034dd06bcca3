using System.Buffers.Binary;
using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

public sealed class WriteAtomicTests
{
    // SBC-4 5.48 WRITE ATOMIC (16): the TRANSFER LENGTH is bytes 12-13, ATOMIC BOUNDARY bytes 10-11.
    private static byte[] Cdb(ulong lba, ushort blocks, byte flags = 0, ushort boundary = 0)
    {
        var cdb = new byte[16];
        cdb[0] = ScsiOpcode.WriteAtomic16;
        cdb[1] = flags;
        BinaryPrimitives.WriteUInt64BigEndian(cdb.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt16BigEndian(cdb.AsSpan(10), boundary);
        BinaryPrimitives.WriteUInt16BigEndian(cdb.AsSpan(12), blocks);
        return cdb;
    }

    private static (uint Max, uint Alignment, uint Granularity) AtomicLimits(ScsiHarness h)
    {
        h.Run([ScsiOpcode.Inquiry, 1, 0xB0, 0, 64, 0], dataInBytes: 64);
        return (BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(44)),
            BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(48)),
            BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(52)));
    }

    [Theory]
    [InlineData(512, 2048u, 8u)] // 1 MiB in 512-byte blocks, whole 4 KiB allocation units
    [InlineData(4096, 256u, 1u)]
    public void BlockLimits_AnnounceTheDevicesAtomicWrite(int blockBytes, uint max, uint unit)
    {
        var h = new ScsiHarness(blockBytes: blockBytes);

        Assert.Equal((max, unit, unit), AtomicLimits(h));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(56))); // no atomic boundaries
    }

    [Fact]
    public void BlockLimits_MaximumAtomicTransferLength_NeverExceedsMaximumTransferLength()
    {
        var h = new ScsiHarness(options: new ScsiLogicalUnitOptions { MaxTransferBytes = 256 << 10 });

        Assert.Equal(512u, AtomicLimits(h).Max);
        Assert.Equal(512u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(8)));
    }

    [Fact]
    public void DeviceWithoutAtomicWrite_LimitsZero_CommandUnsupportedAndNotListed()
    {
        var h = new ScsiHarness(device: new MemoryBlockDevice(16L << 20) { MaxAtomicWriteBytes = 0 });

        Assert.Equal((0u, 0u, 0u), AtomicLimits(h));
        h.AssertCheckCondition(h.Run(Cdb(0, 8), new byte[4096]), SenseData.InvalidOpcode);
        h.Run([ScsiOpcode.MaintenanceIn, 0x0C, 0x01, ScsiOpcode.WriteAtomic16, 0, 0, 0, 0, 1, 0, 0, 0], dataInBytes: 256);
        Assert.Equal(0x01, h.DataIn[1] & 0x07); // SUPPORT 001b: not supported
    }

    [Fact]
    public void WriteAtomic_WritesThroughTheDevicesAtomicWrite_FuaPassedOn()
    {
        var h = new ScsiHarness();
        var data = Enumerable.Range(0, 16 * 512).Select(i => (byte)(i * 7)).ToArray();

        Assert.True(h.Run(Cdb(8, 16, flags: 0x08), data).IsGood);

        var stored = new byte[data.Length];
        h.Memory.Read(8 * 512, stored);
        Assert.Equal(data, stored);
        Assert.Equal(1, h.Memory.AtomicWriteCount);
        Assert.Equal(1, h.Memory.FuaWriteCount);
        h.Run([ScsiOpcode.MaintenanceIn, 0x0C, 0x01, ScsiOpcode.WriteAtomic16, 0, 0, 0, 0, 1, 0, 0, 0], dataInBytes: 256);
        Assert.Equal(0x03, h.DataIn[1] & 0x07);
        Assert.Equal(0x18, h.DataIn[5] & 0x18); // DPO and FUA in the CDB usage data (MODE SENSE says DPOFUA)
    }

    [Fact]
    public void WriteAtomic_ZeroBlocks_IsGoodAndWritesNothing()
    {
        var h = new ScsiHarness();

        Assert.True(h.Run(Cdb(0, 0)).IsGood);
        Assert.Equal(0, h.Memory.AtomicWriteCount);
    }

    [Theory]
    [InlineData(1ul, (ushort)8)] // starts off the 8-block alignment
    [InlineData(8ul, (ushort)4)] // not a multiple of the granularity
    [InlineData(0ul, (ushort)2056)] // longer than MAXIMUM ATOMIC TRANSFER LENGTH (2048)
    public void WriteAtomic_MisalignedOrTooLong_InvalidFieldInCdbAndNothingWritten(ulong lba, ushort blocks)
    {
        var h = new ScsiHarness();

        h.AssertCheckCondition(h.Run(Cdb(lba, blocks), new byte[blocks * 512]), SenseData.InvalidFieldInCdb);
        Assert.Equal(0, h.Memory.AtomicWriteCount);
    }

    [Theory]
    [InlineData((byte)0x20, (ushort)0)] // WRPROTECT without protection information
    [InlineData((byte)0, (ushort)8)] // ATOMIC BOUNDARY where MAXIMUM ATOMIC BOUNDARY SIZE is 0
    public void WriteAtomic_UnsupportedFields_InvalidFieldInCdb(byte flags, ushort boundary)
    {
        var h = new ScsiHarness();

        h.AssertCheckCondition(h.Run(Cdb(0, 8, flags, boundary), new byte[4096]), SenseData.InvalidFieldInCdb);
        Assert.Equal(0, h.Memory.AtomicWriteCount);
    }

    [Theory]
    [InlineData(32760ul, (ushort)16)] // runs past the last block of 16 MiB
    [InlineData(32776ul, (ushort)0)]
    [InlineData(0x8000000000000000ul, (ushort)8)]
    public void WriteAtomic_PastTheEnd_LbaOutOfRange(ulong lba, ushort blocks)
    {
        var h = new ScsiHarness();

        h.AssertCheckCondition(h.Run(Cdb(lba, blocks), new byte[blocks * 512]), SenseData.LbaOutOfRange);
    }

    [Fact]
    public void WriteAtomic_DataShorterThanTheTransfer_RefusedWhole()
    {
        // A WRITE writes what came; an atomic write cannot be partly done, so nothing is written.
        var h = new ScsiHarness();

        h.AssertCheckCondition(h.Run(Cdb(0, 16), new byte[8 * 512]), SenseData.InvalidFieldInInformationUnit);
        Assert.Equal(0, h.Memory.AtomicWriteCount);
    }

    [Fact]
    public void WriteAtomic_ReadOnlyUnit_WriteProtected()
    {
        var h = new ScsiHarness(readOnly: true);

        h.AssertCheckCondition(h.Run(Cdb(0, 8), new byte[4096]), SenseData.WriteProtected);
        Assert.Equal(0, h.Memory.AtomicWriteCount);
    }

    [Fact]
    public void WriteAtomic_SoftwareWriteProtect_SoftwareWriteProtected()
    {
        var h = new ScsiHarness();
        var page = new byte[4 + 12]; // MODE SELECT (6): control mode page 0Ah with SWP (byte 4 bit 3)
        page[4] = 0x0A;
        page[5] = 0x0A;
        page[7] = 0x10;
        page[8] = 0x08;
        page[12] = 0xFF;
        page[13] = 0xFF;
        Assert.True(h.Run([ScsiOpcode.ModeSelect6, 0x10, 0, 0, (byte)page.Length, 0], page).IsGood);

        h.AssertCheckCondition(h.Run(Cdb(0, 8), new byte[4096]), SenseData.SoftwareWriteProtected);
        Assert.Equal(0, h.Memory.AtomicWriteCount);
    }
}
