using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

public sealed class OrWriteTests
{
    [Fact]
    public void OrWrite16_OrsDataIntoTheMedium()
    {
        var h = new ScsiHarness();
        h.Memory.Write(4 * 512, Enumerable.Repeat((byte)0xA5, 3 * 512).ToArray(), false);

        Assert.True(h.Run(ScsiHarness.Cdb16(ScsiOpcode.OrWrite16, 4, 3), Enumerable.Repeat((byte)0x5A, 3 * 512).ToArray()).IsGood);

        var stored = new byte[5 * 512];
        h.Memory.Read(3 * 512, stored);
        Assert.All(stored.AsSpan(0, 512).ToArray(), b => Assert.Equal(0, b));
        Assert.All(stored.AsSpan(512, 3 * 512).ToArray(), b => Assert.Equal(0xFF, b));
        Assert.All(stored.AsSpan(4 * 512).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void OrWrite16_ZeroBlocks_IsGood_PastTheEndIsOutOfRange()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);

        Assert.True(h.Run(ScsiHarness.Cdb16(ScsiOpcode.OrWrite16, 0, 0)).IsGood);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.OrWrite16, 2049, 0)), SenseData.LbaOutOfRange);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.OrWrite16, 2047, 2), new byte[1024]), SenseData.LbaOutOfRange);
    }

    [Fact]
    public void OrWrite16_OrProtectSet_ReturnsInvalidFieldInCdb()
    {
        var h = new ScsiHarness();
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.OrWrite16, 0, 1, flags: 0x20), new byte[512]), SenseData.InvalidFieldInCdb);
    }

    [Fact]
    public void OrWrite16_ReadOnlyUnit_ReturnsWriteProtected()
    {
        var h = new ScsiHarness(readOnly: true);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.OrWrite16, 0, 1), new byte[512]), SenseData.WriteProtected);
    }

    [Fact]
    public void OrWrite16_WriterRacesBetweenReadAndWrite_KeepsBothWrites()
    {
        // The racing writer lands once, after ORWRITE read the medium; a read-modify-write that did
        // not check would put the stale read back and lose it.
        var device = new RacingDevice(new Tidemark.TestKit.MemoryBlockDevice(16L << 20));
        var h = new ScsiHarness(device: device);

        Assert.True(h.Run(ScsiHarness.Cdb16(ScsiOpcode.OrWrite16, 0, 1), Enumerable.Repeat((byte)0x0F, 512).ToArray()).IsGood);

        var stored = new byte[512];
        device.Read(0, stored);
        Assert.All(stored, b => Assert.Equal(0xFF, b));
        Assert.Equal(2, device.CompareAndWrites);
    }

    /// <summary>Writes F0h over block 0 right after the first read, as another session would.</summary>
    private sealed class RacingDevice(IBlockDevice inner) : ForwardingDevice(inner)
    {
        private bool _raced;

        public int CompareAndWrites { get; private set; }

        public override void Read(long offsetBytes, Span<byte> destination)
        {
            Inner.Read(offsetBytes, destination);
            if (!_raced)
            {
                _raced = true;
                Inner.Write(0, Enumerable.Repeat((byte)0xF0, 512).ToArray(), false);
            }
        }

        public override int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess)
        {
            CompareAndWrites++;
            return Inner.CompareAndWrite(offsetBytes, expected, replacement, forceUnitAccess);
        }
    }
}
