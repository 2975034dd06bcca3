using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

public sealed class ReadWriteTests
{
    [Fact]
    public void Write10ThenRead16_SameRange_ReturnsWrittenData()
    {
        var h = new ScsiHarness();
        var data = Enumerable.Range(0, 2048).Select(i => (byte)i).ToArray();

        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 100, 4), data).IsGood);
        var result = h.Run(ScsiHarness.Cdb16(ScsiOpcode.Read16, 100, 4), dataInBytes: 2048);

        Assert.True(result.IsGood);
        Assert.Equal(2048, result.DataInBytes);
        Assert.Equal(2048, result.TransferLengthBytes);
        Assert.Equal(data, h.DataIn);
    }

    [Fact]
    public void Read6_ZeroTransferLength_Means256Blocks()
    {
        var h = new ScsiHarness();
        var result = h.Run([ScsiOpcode.Read6, 0, 0, 0, 0, 0], dataInBytes: 256 * 512);

        Assert.True(result.IsGood);
        Assert.Equal(256 * 512, result.TransferLengthBytes);
    }

    [Fact]
    public void TryParseRead_EveryReadForm_GivesTheLbaAndLengthTheUnitUses()
    {
        Assert.True(ScsiLogicalUnit.TryParseRead([ScsiOpcode.Read6, 0x1F, 0xFF, 0xFE, 0, 0], out var lba, out var blocks));
        Assert.Equal((0x1FFFFEUL, 256u), (lba, blocks));
        Assert.True(ScsiLogicalUnit.TryParseRead(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0xFFFF_FFF0, 7), out lba, out blocks));
        Assert.Equal((0xFFFF_FFF0UL, 7u), (lba, blocks));
        Assert.True(ScsiLogicalUnit.TryParseRead([ScsiOpcode.Read12, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0], out lba, out blocks));
        Assert.Equal((256UL, 65536u), (lba, blocks));
        Assert.True(ScsiLogicalUnit.TryParseRead(ScsiHarness.Cdb16(ScsiOpcode.Read16, 1UL << 40, 9), out lba, out blocks));
        Assert.Equal((1UL << 40, 9u), (lba, blocks));
    }

    [Fact]
    public void TryParseRead_NotAReadOrShorterThanItsForm_IsFalse()
    {
        Assert.False(ScsiLogicalUnit.TryParseRead(ScsiHarness.Cdb10(ScsiOpcode.Write10, 1, 1), out _, out _));
        Assert.False(ScsiLogicalUnit.TryParseRead([], out _, out _));
        Assert.False(ScsiLogicalUnit.TryParseRead(ScsiHarness.Cdb16(ScsiOpcode.Read16, 1, 1).AsSpan(0, 10), out var lba, out var blocks));
        Assert.Equal((0UL, 0u), (lba, blocks));
    }

    [Fact]
    public void Read10_PastEnd_ReturnsLbaOutOfRange()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        var result = h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 2047, 2), dataInBytes: 1024);

        h.AssertCheckCondition(result, SenseData.LbaOutOfRange);
        Assert.Equal(SenseKey.IllegalRequest, h.LastSense().Key);
        Assert.Equal(0x21, h.LastSense().AdditionalSenseCode);
    }

    [Fact]
    public void Read16_ZeroBlocksAtCapacity_IsGoodButOnePastIsOutOfRange()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        Assert.True(h.Run(ScsiHarness.Cdb16(ScsiOpcode.Read16, 2048, 0)).IsGood);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.Read16, 2049, 0)), SenseData.LbaOutOfRange);
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb16(ScsiOpcode.Read16, ulong.MaxValue, 1)), SenseData.LbaOutOfRange);
    }

    [Fact]
    public void Read10_WithRdprotect_ReturnsInvalidFieldInCdb()
    {
        var h = new ScsiHarness();
        h.AssertCheckCondition(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1, flags: 0x20), dataInBytes: 512), SenseData.InvalidFieldInCdb);
    }

    [Fact]
    public void Write10_ReadOnlyUnit_ReturnsWriteProtected()
    {
        var h = new ScsiHarness(readOnly: true);
        var result = h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512]);

        h.AssertCheckCondition(result, SenseData.WriteProtected);
        Assert.Equal(SenseKey.DataProtect, h.LastSense().Key);
    }

    [Fact]
    public void Write10_DeviceOutOfSpace_ReturnsSpaceAllocationFailed()
    {
        var h = new ScsiHarness(device: new FullDevice());
        var result = h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512]);

        h.AssertCheckCondition(result, SenseData.SpaceAllocationFailedWriteProtect);
        Assert.Equal((SenseKey.DataProtect, (byte)0x27, (byte)0x07), (h.LastSense().Key, h.LastSense().AdditionalSenseCode, h.LastSense().AdditionalSenseCodeQualifier));
    }

    [Fact]
    public void Write10_ShortDataOut_WritesWhatWasSentAndReportsFullTransferLength()
    {
        var h = new ScsiHarness();
        var result = h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 2), Enumerable.Repeat((byte)'b', 512).ToArray());

        Assert.True(result.IsGood);
        Assert.Equal(1024, result.TransferLengthBytes);
        var stored = new byte[1024];
        h.Memory.Read(0, stored);
        Assert.All(stored[..512], b => Assert.Equal((byte)'b', b));
        Assert.All(stored[512..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void Verify10_ByteCheckMismatch_ReturnsMiscompareWithOffset()
    {
        var h = new ScsiHarness();
        var data = Enumerable.Repeat((byte)7, 1024).ToArray();
        h.Memory.Write(0, data, forceUnitAccess: false);
        data[700] = 8;

        var result = h.Run(ScsiHarness.Cdb10(ScsiOpcode.Verify10, 0, 2, flags: 0x02), data);

        h.AssertCheckCondition(result, SenseData.Miscompare(700));
    }

    [Fact]
    public void CompareAndWrite_Match_WritesNewData()
    {
        var h = new ScsiHarness();
        var cdb = ScsiHarness.Cdb16(ScsiOpcode.CompareAndWrite, 10, 0);
        cdb[13] = 1;
        var dataOut = new byte[1024];
        dataOut.AsSpan(512).Fill(0x5A);

        Assert.True(h.Run(cdb, dataOut).IsGood);
        var stored = new byte[512];
        h.Memory.Read(10 * 512, stored);
        Assert.All(stored, b => Assert.Equal(0x5A, b));
    }

    [Fact]
    public void CompareAndWrite_Mismatch_ReturnsMiscompareAndWritesNothing()
    {
        var h = new ScsiHarness();
        h.Memory.Write(0, Enumerable.Repeat((byte)1, 512).ToArray(), false);
        var cdb = ScsiHarness.Cdb16(ScsiOpcode.CompareAndWrite, 0, 0);
        cdb[13] = 1;
        var dataOut = Enumerable.Repeat((byte)1, 1024).ToArray();
        dataOut[33] = 2;

        var result = h.Run(cdb, dataOut);

        h.AssertCheckCondition(result, SenseData.Miscompare(33));
        Assert.Equal(SenseKey.Miscompare, h.LastSense().Key);
        Assert.Equal(0x1D, h.LastSense().AdditionalSenseCode);
    }

    [Fact]
    public void SynchronizeCache10_Flushes()
    {
        var h = new ScsiHarness();
        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.SynchronizeCache10, 0, 0)).IsGood);
        Assert.Equal(1, h.Memory.FlushCount);
    }

    [Fact]
    public void UnknownOpcode_ReturnsInvalidCommandOperationCode()
    {
        var h = new ScsiHarness();
        h.AssertCheckCondition(h.Run([0xC7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), SenseData.InvalidOpcode);
        h.AssertCheckCondition(h.Run([ScsiOpcode.Read10, 0, 0]), SenseData.InvalidOpcode);
    }

    /// <summary>A device whose pool is full: every write fails with NoSpace.</summary>
    private sealed class FullDevice : IBlockDevice
    {
        private readonly MemoryBlockDevice _inner = new(1 << 20);

        public event EventHandler? SizeChanged
        {
            add { }
            remove { }
        }

        public Guid Id => _inner.Id;

        public string Name => "full";

        public long SizeBytes => _inner.SizeBytes;

        public int LogicalBlockSizeBytes => 512;

        public int AllocationUnitBytes => 4096;

        public bool IsReadOnly => false;

        public void Read(long offsetBytes, Span<byte> destination) => _inner.Read(offsetBytes, destination);

        public void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess) => throw new StorageException(StorageError.NoSpace, "pool is full");

        public void Flush()
        {
        }

        public void Unmap(long offsetBytes, long lengthBytes) => _inner.Unmap(offsetBytes, lengthBytes);

        public void WriteZeroes(long offsetBytes, long lengthBytes, bool mayUnmap) => throw new StorageException(StorageError.NoSpace, "pool is full");

        public int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess) =>
            throw new StorageException(StorageError.NoSpace, "pool is full");

        public int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination) =>
            _inner.GetAllocationStatus(offsetBytes, lengthBytes, destination);
    }
}
