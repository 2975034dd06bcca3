namespace Tidemark.Scsi.Tests;

public sealed class SoftwareWriteProtectTests
{
    private static byte[] ControlPageList(bool swp)
    {
        // MODE SELECT (6) parameter list: 4-byte header, no block descriptor, the control page as
        // MODE SENSE reports it with SWP (byte 4 bit 3) set as asked.
        var list = new byte[4 + 12];
        list[4] = 0x0A;
        list[5] = 0x0A;
        list[7] = 0x10;
        list[8] = swp ? (byte)0x08 : (byte)0;
        list[12] = 0xFF;
        list[13] = 0xFF;
        return list;
    }

    private static ScsiResult ModeSelect(ScsiHarness h, byte[] list, ScsiNexus? nexus = null) =>
        h.Run([ScsiOpcode.ModeSelect6, 0x10, 0, 0, (byte)list.Length, 0], list, nexus: nexus);

    [Fact]
    public void Swp_KeptOnTheDevice_AnotherUnitOfTheSameVolumeIsRefusedAndMayClearIt()
    {
        // Two exports of one volume are one medium; the NBD side reads the same device flag.
        var device = new Tidemark.TestKit.MemoryBlockDevice(16L << 20);
        var a = new ScsiHarness(device: device);
        var b = new ScsiHarness(device: device);

        Assert.True(ModeSelect(a, ControlPageList(swp: true)).IsGood);

        Assert.True(device.SoftwareWriteProtected);
        b.AssertCheckCondition(b.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512]), SenseData.SoftwareWriteProtected);
        Assert.True(ModeSelect(b, ControlPageList(swp: false)).IsGood);
        Assert.False(a.Unit.IsSoftwareWriteProtected);
        Assert.True(a.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512]).IsGood);
    }

    [Fact]
    public void Swp_DeviceCannotHoldIt_KeptOnTheUnit()
    {
        var h = new ScsiHarness(device: new Tidemark.TestKit.ForwardingDevice(new Tidemark.TestKit.MemoryBlockDevice(16L << 20)));

        Assert.True(ModeSelect(h, ControlPageList(swp: true)).IsGood);

        Assert.True(h.Unit.IsSoftwareWriteProtected);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512]), SenseData.SoftwareWriteProtected);
    }

    [Fact]
    public void ModeSense_ControlPage_ReportsSwpChangeable()
    {
        var h = new ScsiHarness();
        Assert.True(h.Run([ScsiOpcode.ModeSense6, 0x08, 0x40 | 0x0A, 0, 255, 0], dataInBytes: 255).IsGood);
        Assert.Equal(0x0A, h.DataIn[4]);
        Assert.Equal(0x08, h.DataIn[4 + 4]);
    }

    [Fact]
    public void Swp_Set_RefusesEveryWriteWithSoftwareWriteProtected_ReadsGo_ClearedWritesAgain()
    {
        var h = new ScsiHarness();
        Assert.True(ModeSelect(h, ControlPageList(swp: true)).IsGood);
        Assert.True(h.Unit.IsSoftwareWriteProtected);

        var block = new byte[512];
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), block), SenseData.SoftwareWriteProtected);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.WriteSame16, 0, 1), block), SenseData.SoftwareWriteProtected);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.OrWrite16, 0, 1), block), SenseData.SoftwareWriteProtected);
        h.AssertCheckCondition(h.Run([ScsiOpcode.Unmap, 0, 0, 0, 0, 0, 0, 0, 24, 0], new byte[24]), SenseData.SoftwareWriteProtected);
        h.AssertCheckCondition(h.Run([ScsiOpcode.Sanitize, ScsiOpcode.SanitizeBlockErase, 0, 0, 0, 0, 0, 0, 0, 0]), SenseData.SoftwareWriteProtected);
        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), dataInBytes: 512).IsGood);

        // MODE SENSE's device-specific parameter shows the medium write-protected (WP, bit 7).
        Assert.True(h.Run([ScsiOpcode.ModeSense6, 0x08, 0x0A, 0, 255, 0], dataInBytes: 255).IsGood);
        Assert.Equal(0x80, h.DataIn[2] & 0x80);
        Assert.Equal(0x08, h.DataIn[4 + 4] & 0x08);

        Assert.True(ModeSelect(h, ControlPageList(swp: false)).IsGood);
        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), block).IsGood);
    }

    [Fact]
    public void Swp_SetByOneNexus_OthersGetModeParametersChangedOnce()
    {
        var h = new ScsiHarness();
        var other = h.Unit.OpenNexus("iqn.other,i,0x1");

        Assert.True(ModeSelect(h, ControlPageList(swp: true)).IsGood);

        Assert.True(h.Run([ScsiOpcode.TestUnitReady, 0, 0, 0, 0, 0]).IsGood);
        h.AssertCheckCondition(h.Run([ScsiOpcode.TestUnitReady, 0, 0, 0, 0, 0], nexus: other), SenseData.ModeParametersChanged);
        Assert.True(h.Run([ScsiOpcode.TestUnitReady, 0, 0, 0, 0, 0], nexus: other).IsGood);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512], nexus: other), SenseData.SoftwareWriteProtected);
    }

    [Fact]
    public void ModeSelect_ControlPageChangingAnotherField_IsRefusedAndSwpStaysClear()
    {
        var h = new ScsiHarness();
        var list = ControlPageList(swp: true);
        list[4 + 2] = 0x04; // D_SENSE: not changeable

        h.AssertCheckCondition(ModeSelect(h, list), SenseData.InvalidFieldInParameterList);
        Assert.False(h.Unit.IsSoftwareWriteProtected);
    }

    [Fact]
    public void ReadOnlyUnit_WritesReportWriteProtected_NotSoftware()
    {
        var h = new ScsiHarness(readOnly: true);
        Assert.True(ModeSelect(h, ControlPageList(swp: true)).IsGood);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512]), SenseData.WriteProtected);
    }
}
