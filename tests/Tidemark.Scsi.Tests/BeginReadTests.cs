namespace Tidemark.Scsi.Tests;

/// <summary>
/// ScsiLogicalUnit.BeginRead/EndRead, the READ entry of a transport that reads asynchronously (ADR 0021,
/// iSCSI): the same checks and answers as Execute, and what to read.
/// </summary>
public sealed class BeginReadTests
{
    public static TheoryData<string> Refusals => ["out of range", "rdprotect", "too long", "unit attention", "reserved by another"];

    /// <summary>Puts the unit in the state the case names and returns the READ (16) that it refuses.</summary>
    private static byte[] Arrange(ScsiHarness h, string refusal)
    {
        var capacityBlocks = (ulong)(h.Device.SizeBytes / 512);
        switch (refusal)
        {
            case "out of range":
                return ScsiHarness.Cdb16(ScsiOpcode.Read16, capacityBlocks - 2, 4);
            case "rdprotect":
                return ScsiHarness.Cdb16(ScsiOpcode.Read16, 0, 4, flags: 0x20);
            case "too long":
                return ScsiHarness.Cdb16(ScsiOpcode.Read16, 0, (uint)capacityBlocks);
            case "unit attention":
                h.Unit.Reset();
                return ScsiHarness.Cdb16(ScsiOpcode.Read16, 0, 4);
            default:
                Assert.True(h.Run([ScsiOpcode.Reserve6, 0, 0, 0, 0, 0], nexus: h.Unit.OpenNexus("other")).IsGood);
                return ScsiHarness.Cdb16(ScsiOpcode.Read16, 0, 4);
        }
    }

    [Theory]
    [MemberData(nameof(Refusals))]
    public void BeginRead_RefusesExactlyAsExecute(string refusal)
    {
        var options = new ScsiLogicalUnitOptions { MaxTransferBytes = 1 << 20 };
        var viaExecute = new ScsiHarness(options: options);
        var viaBegin = new ScsiHarness(options: options);
        var executed = viaExecute.Run(Arrange(viaExecute, refusal), dataInBytes: 2048);
        var sense = new byte[SenseData.FixedFormatLengthBytes];

        var begun = viaBegin.Unit.BeginRead(viaBegin.Nexus, Arrange(viaBegin, refusal), 2048, sense, out _);

        Assert.False(executed.IsGood);
        Assert.Equal(executed, begun);
        Assert.Equal(viaExecute.Sense, sense);
    }

    [Fact]
    public void BeginRead_GivesWhatToRead_AndEndReadTheResult()
    {
        var h = new ScsiHarness();
        var sense = new byte[SenseData.FixedFormatLengthBytes];

        // EDTL ends inside the third block: three whole blocks are read, 1100 bytes sent.
        var begun = h.Unit.BeginRead(h.Nexus, ScsiHarness.Cdb16(ScsiOpcode.Read16, 10, 4), 1100, sense, out var plan);

        Assert.True(begun.IsGood);
        Assert.Equal(new ScsiReadPlan(10 * 512, 1536, 1100, 2048), plan);
        Assert.Equal(new ScsiResult(ScsiStatus.Good, 1100, 0, 2048), h.Unit.EndRead(plan, null, sense));
    }

    [Fact]
    public void EndRead_StorageError_IsAnUnrecoveredReadError_AndOtherErrorsAreRethrown()
    {
        var h = new ScsiHarness();
        var sense = new byte[SenseData.FixedFormatLengthBytes];
        Assert.True(h.Unit.BeginRead(h.Nexus, ScsiHarness.Cdb16(ScsiOpcode.Read16, 0, 1), 512, sense, out var plan).IsGood);

        var failed = h.Unit.EndRead(plan, new StorageException(StorageError.IoError, "gone"), sense);

        Assert.Equal(ScsiStatus.CheckCondition, failed.Status);
        Assert.True(SenseData.TryRead(sense, out var read));
        Assert.Equal(SenseData.UnrecoveredReadError, read);
        Assert.True(h.Unit.BeginRead(h.Nexus, ScsiHarness.Cdb16(ScsiOpcode.Read16, 0, 1), 512, sense, out plan).IsGood);
        Assert.Throws<InvalidOperationException>(() => h.Unit.EndRead(plan, new InvalidOperationException("bug"), sense));
    }
}
