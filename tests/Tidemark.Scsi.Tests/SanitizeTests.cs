using System.Buffers.Binary;
using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

public sealed class SanitizeTests
{
    private static byte[] Cdb(byte action, int listLength = 0, byte flags = 0) =>
        [ScsiOpcode.Sanitize, (byte)(action | flags), 0, 0, 0, 0, 0, (byte)(listLength >> 8), (byte)listLength, 0];

    private static byte[] OverwriteList(byte first, params byte[] pattern)
    {
        var list = new byte[4 + pattern.Length];
        list[0] = first;
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(2), (ushort)pattern.Length);
        pattern.CopyTo(list, 4);
        return list;
    }

    private static ScsiHarness Written()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        h.Memory.Write(0, Enumerable.Repeat((byte)'a', 1 << 20).ToArray(), false);
        return h;
    }

    [Theory]
    [InlineData(ScsiOpcode.SanitizeBlockErase)]
    [InlineData(ScsiOpcode.SanitizeCryptoErase)]
    public void BlockAndCryptoErase_DeallocateTheWholeUnit(byte action)
    {
        var h = Written();

        Assert.True(h.Run(Cdb(action)).IsGood);

        Span<AllocationRun> runs = stackalloc AllocationRun[2];
        Assert.Equal(1, h.Memory.GetAllocationStatus(0, 1 << 20, runs));
        Assert.Equal(AllocationState.Hole, runs[0].State);
        Assert.Equal(1 << 20, runs[0].LengthBytes);
    }

    [Fact]
    public void Overwrite_HalfBlockPattern_FillsEveryBlock()
    {
        var h = Written();
        var pattern = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        var list = OverwriteList(0x01, pattern);

        Assert.True(h.Run(Cdb(ScsiOpcode.SanitizeOverwrite, list.Length), list).IsGood);

        var stored = new byte[1 << 20];
        h.Memory.Read(0, stored);
        for (var p = 0; p < stored.Length; p += 256)
        {
            Assert.Equal(pattern, stored[p..(p + 256)]);
        }
    }

    [Fact]
    public void Overwrite_InvertWithEvenCount_LastPassIsTheInvertedPattern()
    {
        var h = Written();
        var list = OverwriteList(0x80 | 0x02, 0x0F, 0x0F, 0x0F, 0x0F);

        Assert.True(h.Run(Cdb(ScsiOpcode.SanitizeOverwrite, list.Length), list).IsGood);

        var stored = new byte[1 << 20];
        h.Memory.Read(0, stored);
        Assert.All(stored, b => Assert.Equal(0xF0, b));
    }

    [Fact]
    public void Overwrite_ZeroPattern_DeallocatesInsteadOfWritingZeros()
    {
        var h = Written();
        var list = OverwriteList(0x01, new byte[512]);

        Assert.True(h.Run(Cdb(ScsiOpcode.SanitizeOverwrite, list.Length), list).IsGood);

        Span<AllocationRun> runs = stackalloc AllocationRun[2];
        Assert.Equal(1, h.Memory.GetAllocationStatus(0, 1 << 20, runs));
        Assert.Equal(AllocationState.Hole, runs[0].State);
    }

    [Theory]
    [InlineData(0x00, 512, 516)] // OVERWRITE COUNT 0
    [InlineData(0x01, 0, 516)] // INITIALIZATION PATTERN LENGTH 0
    [InlineData(0x01, 516, 516)] // pattern longer than a block
    [InlineData(0x01, 100, 516)] // pattern length disagrees with the list
    [InlineData(0x21, 512, 516)] // TEST
    public void Overwrite_BadParameterList_IsRefusedAndChangesNothing(byte first, int patternLength, int listLength)
    {
        var h = Written();
        var list = new byte[listLength];
        list[0] = first;
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(2), (ushort)patternLength);

        h.AssertCheckCondition(h.Run(Cdb(ScsiOpcode.SanitizeOverwrite, list.Length), list), SenseData.InvalidFieldInParameterList);

        var stored = new byte[512];
        h.Memory.Read(0, stored);
        Assert.All(stored, b => Assert.Equal((byte)'a', b));
    }

    [Theory]
    [InlineData(ScsiOpcode.SanitizeOverwrite, 4)]
    [InlineData(ScsiOpcode.SanitizeOverwrite, 517)]
    [InlineData(ScsiOpcode.SanitizeBlockErase, 8)]
    [InlineData(ScsiOpcode.SanitizeCryptoErase, 8)]
    [InlineData(ScsiOpcode.SanitizeExitFailureMode, 8)]
    [InlineData(0x04, 0)]
    public void BadListLengthOrServiceAction_ReturnsInvalidFieldInCdb(byte action, int listLength)
    {
        var h = Written();
        h.AssertCheckCondition(h.Run(Cdb(action, listLength), new byte[listLength]), SenseData.InvalidFieldInCdb);
        var stored = new byte[512];
        h.Memory.Read(0, stored);
        Assert.All(stored, b => Assert.Equal((byte)'a', b));
    }

    [Fact]
    public void ReservedCdbBits_ReturnInvalidFieldInCdb()
    {
        var h = Written();
        h.AssertCheckCondition(h.Run(Cdb(ScsiOpcode.SanitizeBlockErase, flags: 0x40)), SenseData.InvalidFieldInCdb);
        var cdb = Cdb(ScsiOpcode.SanitizeBlockErase);
        cdb[3] = 1;
        h.AssertCheckCondition(h.Run(cdb), SenseData.InvalidFieldInCdb);
    }

    [Fact]
    public void ReadOnlyUnit_ReturnsWriteProtected()
    {
        var h = new ScsiHarness(readOnly: true);
        h.AssertCheckCondition(h.Run(Cdb(ScsiOpcode.SanitizeBlockErase)), SenseData.WriteProtected);
    }

    [Fact]
    public void ReservedByAnotherInitiator_ReturnsReservationConflict()
    {
        var h = Written();
        var other = h.Unit.OpenNexus("iqn.other,i,0x1");
        Assert.True(h.Run([ScsiOpcode.Reserve6, 0, 0, 0, 0, 0], nexus: other).IsGood);

        Assert.Equal(ScsiStatus.ReservationConflict, h.Run(Cdb(ScsiOpcode.SanitizeBlockErase)).Status);
        var stored = new byte[512];
        h.Memory.Read(0, stored);
        Assert.All(stored, b => Assert.Equal((byte)'a', b));
    }

    [Fact]
    public async Task WhileRunning_OtherCommandsGetSanitizeInProgress_InquiryStillAnswers()
    {
        // The device blocks inside the unmap until the test has tried other commands.
        var gate = new BlockingDevice(new Tidemark.TestKit.MemoryBlockDevice(1 << 20));
        var h = new ScsiHarness(device: gate);
        var other = h.Unit.OpenNexus("iqn.other,i,0x1");
        var sanitize = Task.Run(() => h.Unit.Execute(h.Nexus, new ScsiCommand(Cdb(ScsiOpcode.SanitizeBlockErase), [], [], new byte[18])));
        Assert.True(gate.Entered.Wait(TimeSpan.FromSeconds(30)));

        var sense = new byte[18];
        var read = h.Unit.Execute(other, new ScsiCommand(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), [], new byte[512], sense));
        var inquiry = h.Unit.Execute(other, new ScsiCommand([ScsiOpcode.Inquiry, 0, 0, 0, 36, 0], [], new byte[36], new byte[18]));
        gate.Release.Set();

        Assert.Equal(ScsiStatus.CheckCondition, read.Status);
        Assert.True(SenseData.TryRead(sense, out var readSense));
        Assert.Equal(SenseData.SanitizeInProgress, readSense);
        Assert.True(inquiry.IsGood);
        Assert.True((await sanitize.WaitAsync(TimeSpan.FromSeconds(30))).IsGood);
        Assert.True(h.Unit.Execute(other, new ScsiCommand(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), [], new byte[512], sense)).IsGood);
    }

    private sealed class BlockingDevice(IBlockDevice inner) : ForwardingDevice(inner)
    {
        public ManualResetEventSlim Entered { get; } = new();

        public ManualResetEventSlim Release { get; } = new();

        public override void Unmap(long offsetBytes, long lengthBytes)
        {
            Entered.Set();
            Release.Wait(TimeSpan.FromSeconds(30));
            Inner.Unmap(offsetBytes, lengthBytes);
        }
    }
}
