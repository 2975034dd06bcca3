using System.Buffers.Binary;
using System.Text;
using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

public sealed class InquiryAndPagesTests
{
    [Fact]
    public void Inquiry_Standard_ReportsSpc4DiskWithVendor()
    {
        var h = new ScsiHarness();
        var result = h.Run([ScsiOpcode.Inquiry, 0, 0, 0, 96, 0], dataInBytes: 96);

        Assert.True(result.IsGood);
        Assert.Equal(96, result.DataInBytes);
        Assert.Equal(0x00, h.DataIn[0]);
        Assert.Equal(0x06, h.DataIn[2]);
        Assert.Equal(0x12, h.DataIn[3] & 0x1F | 0x10);
        Assert.Equal(91, h.DataIn[4]);
        Assert.Equal("TIDEMARK", Encoding.ASCII.GetString(h.DataIn, 8, 8));
    }

    [Fact]
    public void Inquiry_AllocationLengthShort_TruncatesAndReportsTransfer()
    {
        var h = new ScsiHarness();
        var result = h.Run([ScsiOpcode.Inquiry, 0, 0, 0, 10, 0], dataInBytes: 255);

        Assert.Equal(10, result.DataInBytes);
        Assert.Equal(10, result.TransferLengthBytes);
    }

    [Fact]
    public void Inquiry_SupportedVpdPages_ListsPagesInOrder()
    {
        var h = new ScsiHarness();
        var result = h.Run([ScsiOpcode.Inquiry, 1, 0x00, 0, 255, 0], dataInBytes: 255);

        Assert.Equal(new byte[] { 0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2 }, h.DataIn[4..result.DataInBytes]);
    }

    [Fact]
    public void Inquiry_DeviceIdentification_NaaIsStableAndDerivedFromDeviceId()
    {
        var device = new MemoryBlockDevice(1 << 20);
        var first = new ScsiHarness(device: device);
        var second = new ScsiHarness(device: device);
        first.Run([ScsiOpcode.Inquiry, 1, 0x83, 0, 255, 0], dataInBytes: 255);
        second.Run([ScsiOpcode.Inquiry, 1, 0x83, 0, 255, 0], dataInBytes: 255);

        Assert.Equal(0x03, first.DataIn[5] & 0x0F); // NAA designator
        Assert.Equal(16, first.DataIn[7]);
        Assert.Equal(6, first.DataIn[8] >> 4); // NAA 6
        Assert.Equal(first.DataIn, second.DataIn);
        Assert.Equal(0x01, first.DataIn[25] & 0x0F); // T10 vendor id designator follows
        Assert.Contains(device.Id.ToString("N"), Encoding.ASCII.GetString(first.DataIn), StringComparison.Ordinal);
    }

    [Fact]
    public void Inquiry_BlockLimits_ReportsUnmapLimits()
    {
        var h = new ScsiHarness();
        h.Run([ScsiOpcode.Inquiry, 1, 0xB0, 0, 64, 0], dataInBytes: 64);

        Assert.Equal(0x3C, h.DataIn[3]);
        Assert.NotEqual(0u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(20)));
        Assert.NotEqual(0u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(24)));
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(28)));
        Assert.NotEqual(0ul, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(36)));
    }

    [Fact]
    public void Inquiry_LogicalBlockProvisioning_ReportsThinWithUnmapAndLbprz()
    {
        var h = new ScsiHarness();
        h.Run([ScsiOpcode.Inquiry, 1, 0xB2, 0, 64, 0], dataInBytes: 64);

        Assert.Equal(0xE4, h.DataIn[5]);
        Assert.Equal(0x02, h.DataIn[6] & 0x07);
    }

    [Fact]
    public void Inquiry_UnknownVpdPage_ReturnsInvalidFieldInCdb()
    {
        var h = new ScsiHarness();
        h.AssertCheckCondition(h.Run([ScsiOpcode.Inquiry, 1, 0x99, 0, 64, 0], dataInBytes: 64), SenseData.InvalidFieldInCdb);
    }

    [Fact]
    public void ReadCapacity16_ReportsLastLbaAndThinProvisioningBits()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        var cdb = new byte[16];
        cdb[0] = ScsiOpcode.ServiceActionIn16;
        cdb[1] = ScsiOpcode.ReadCapacity16ServiceAction;
        cdb[13] = 32;
        h.Run(cdb, dataInBytes: 32);

        Assert.Equal(2047ul, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn));
        Assert.Equal(512u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(8)));
        Assert.Equal(3, h.DataIn[13] & 0x0F);
        Assert.Equal(0xC0, h.DataIn[14] & 0xC0);
    }

    [Fact]
    public void ReadCapacity10_ReportsLastLbaAndBlockLength()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20, blockBytes: 4096);
        h.Run([ScsiOpcode.ReadCapacity10, 0, 0, 0, 0, 0, 0, 0, 0, 0], dataInBytes: 8);

        Assert.Equal(255u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(4)));
    }

    [Fact]
    public void ModeSense6_AllPages_IncludesCachingControlAndInformationalExceptions()
    {
        var h = new ScsiHarness();
        var result = h.Run([ScsiOpcode.ModeSense6, 0, 0x3F, 0, 255, 0], dataInBytes: 255);

        Assert.True(result.IsGood);
        Assert.Equal(result.DataInBytes - 1, h.DataIn[0]);
        Assert.Equal(8, h.DataIn[3]); // one block descriptor
        var pages = new List<int>();
        for (var p = 4 + 8; p < result.DataInBytes; p += 2 + h.DataIn[p + 1])
        {
            pages.Add(h.DataIn[p] & 0x3F);
        }

        Assert.Equal([0x08, 0x0A, 0x1C], pages);
        Assert.Equal(0x04, h.DataIn[12 + 2] & 0x04); // WCE
    }

    [Fact]
    public void ModeSense10_ReadOnlyUnit_SetsWriteProtectBit()
    {
        var h = new ScsiHarness(readOnly: true);
        h.Run([ScsiOpcode.ModeSense10, 0x08, 0x0A, 0, 0, 0, 0, 0, 255, 0], dataInBytes: 255);

        Assert.Equal(0x80, h.DataIn[3] & 0x80);
    }

    [Fact]
    public void ModeSense6_SavedValues_ReturnsSavingParametersNotSupported()
    {
        var h = new ScsiHarness();
        h.AssertCheckCondition(h.Run([ScsiOpcode.ModeSense6, 0, 0xC8, 0, 255, 0], dataInBytes: 255), SenseData.SavingParametersNotSupported);
    }

    [Fact]
    public void ModeSelect6_ChangedCachingPage_ReturnsInvalidFieldInParameterList()
    {
        var h = new ScsiHarness();
        var list = new byte[4 + 20];
        list[4] = 0x08;
        list[5] = 0x12;
        h.AssertCheckCondition(h.Run([ScsiOpcode.ModeSelect6, 0x10, 0, 0, (byte)list.Length, 0], list), SenseData.InvalidFieldInParameterList);

        list[6] = 0x04;
        Assert.True(h.Run([ScsiOpcode.ModeSelect6, 0x10, 0, 0, (byte)list.Length, 0], list).IsGood);
    }

    [Fact]
    public void ReportSupportedOperationCodes_OneCommand_ReportsSupportAndUsageData()
    {
        var h = new ScsiHarness();
        byte[] cdb = [ScsiOpcode.MaintenanceIn, 0x0C, 0x01, ScsiOpcode.Write16, 0, 0, 0, 0, 1, 0, 0, 0];
        var result = h.Run(cdb, dataInBytes: 256);

        Assert.True(result.IsGood);
        Assert.Equal(0x03, h.DataIn[1] & 0x07);
        Assert.Equal(16, BinaryPrimitives.ReadUInt16BigEndian(h.DataIn.AsSpan(2)));
        Assert.Equal(ScsiOpcode.Write16, h.DataIn[4]);
    }

    [Theory]
    [InlineData(ScsiOpcode.SanitizeOverwrite)]
    [InlineData(ScsiOpcode.SanitizeBlockErase)]
    [InlineData(ScsiOpcode.SanitizeCryptoErase)]
    [InlineData(ScsiOpcode.SanitizeExitFailureMode)]
    public void ReportSupportedOperationCodes_Sanitize_ListsEachServiceActionWithItsUsage(byte action)
    {
        var h = new ScsiHarness();
        byte[] cdb = [ScsiOpcode.MaintenanceIn, 0x0C, 0x02, ScsiOpcode.Sanitize, 0, action, 0, 0, 1, 0, 0, 0];

        Assert.True(h.Run(cdb, dataInBytes: 256).IsGood);

        Assert.Equal(0x03, h.DataIn[1] & 0x07);
        Assert.Equal(10, BinaryPrimitives.ReadUInt16BigEndian(h.DataIn.AsSpan(2)));
        Assert.Equal(ScsiOpcode.Sanitize, h.DataIn[4]);
        Assert.Equal(0xA0 | action, h.DataIn[5]); // IMMED, AUSE, the service action; bit 6 reserved
    }

    [Fact]
    public void RequestSense_PendingUnitAttention_ReturnsAndClearsIt()
    {
        var h = new ScsiHarness();
        h.Unit.Reset();
        var result = h.Run([ScsiOpcode.RequestSense, 0, 0, 0, 18, 0], dataInBytes: 18);

        Assert.True(result.IsGood);
        Assert.True(SenseData.TryRead(h.DataIn, out var sense));
        Assert.Equal(SenseData.LogicalUnitResetOccurred, sense);
        Assert.True(h.Run([ScsiOpcode.TestUnitReady, 0, 0, 0, 0, 0]).IsGood);
    }
}
