using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

/// <summary>
/// A WRITE whose data-out is a payload source (ScsiCommand's source constructor): the device pulls it
/// (IBlockDevice.WriteFrom), after the same checks as a WRITE with its data in memory.
/// </summary>
public sealed class WriteFromSourceTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Write16_FromASource_IsPulledByTheDevice_AndLandsAtItsLba(bool fua)
    {
        var device = new PullCountingDevice(new MemoryBlockDevice(16L << 20));
        var h = new ScsiHarness(device: device);
        var data = Enumerable.Range(0, 64 * 1024).Select(i => (byte)(i * 7)).ToArray();
        var source = new ArrayPayloadSource(data);

        var result = Run(h, ScsiHarness.Cdb16(ScsiOpcode.Write16, 300, 128, fua ? (byte)0x08 : (byte)0), source);

        Assert.True(result.IsGood);
        Assert.Equal(data.Length, result.TransferLengthBytes);
        Assert.Equal(0, source.RemainingBytes);
        Assert.Equal((300L * 512, data.Length, fua), Assert.Single(device.Pulls));
        var stored = new byte[data.Length];
        h.Device.Read(300L * 512, stored);
        Assert.Equal(data, stored);
    }

    [Fact]
    public void Write_FromASourceEndingInsideABlock_MergesTheLastBlockWithTheMedium()
    {
        // FCP-4 9.4.2 a): EDTL shorter than the CDB's transfer writes what was sent.
        var h = new ScsiHarness();
        var medium = Enumerable.Repeat((byte)0xEE, 1024).ToArray();
        h.Device.Write(0, medium, false);
        var data = Enumerable.Repeat((byte)0x11, 700).ToArray();

        var result = Run(h, ScsiHarness.Cdb16(ScsiOpcode.Write16, 0, 2), new ArrayPayloadSource(data));

        Assert.True(result.IsGood);
        var stored = new byte[1024];
        h.Device.Read(0, stored);
        Assert.Equal(data.Concat(medium.Skip(700)).ToArray(), stored);
    }

    [Theory]
    [InlineData("protected")]
    [InlineData("reserved")]
    [InlineData("out of range")]
    public void Write_FromASource_RefusedByTheChecks_TakesNothingFromIt(string why)
    {
        var h = new ScsiHarness(readOnly: why == "protected");
        if (why == "reserved")
        {
            Assert.True(h.Run([ScsiOpcode.Reserve6, 0, 0, 0, 0, 0], nexus: h.Unit.OpenNexus("other")).IsGood);
        }

        var source = new ArrayPayloadSource(new byte[4096]);
        var lba = why == "out of range" ? (16UL << 20) / 512 : 0;

        var result = Run(h, ScsiHarness.Cdb16(ScsiOpcode.Write16, lba, 8), source);

        Assert.False(result.IsGood);
        Assert.Equal(4096, source.RemainingBytes);
    }

    private static ScsiResult Run(ScsiHarness h, byte[] cdb, IPayloadSource source) =>
        h.Unit.Execute(h.Nexus, new ScsiCommand(cdb, source, h.Sense));

    private sealed class PullCountingDevice(IBlockDevice inner) : ForwardingDevice(inner), IBlockDevice
    {
        public List<(long Offset, int Length, bool Fua)> Pulls { get; } = [];

        public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
        {
            Pulls.Add((offsetBytes, lengthBytes, forceUnitAccess));
            Inner.WriteFrom(offsetBytes, lengthBytes, source, forceUnitAccess);
        }
    }
}
