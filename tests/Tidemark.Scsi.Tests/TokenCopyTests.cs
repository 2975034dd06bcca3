using System.Buffers.Binary;
using Tidemark.TestKit;
using static Tidemark.Scsi.Tests.ExtendedCopyTests;

namespace Tidemark.Scsi.Tests;

public sealed class TokenCopyTests
{
    private const int Block = 512;

    [Fact]
    public void PopulateThenWriteUsingToken_OnOneUnit_CopiesTheRanges_AndRrtiReportsBoth()
    {
        var h = new ScsiHarness();
        var first = Pattern(4 * Block, 1);
        var second = Pattern(6 * Block, 2);
        h.Memory.Write(10 * Block, first, false);
        h.Memory.Write(50 * Block, second, false);

        var token = Populate(h, listId: 0x1000, [(10, 4), (50, 6)]);
        Assert.Equal(RodTokenStore.AccessUponReference, BinaryPrimitives.ReadUInt32BigEndian(token));

        // Ten token blocks into two destination ranges of 3 and 7 blocks: the pieces cross range ends.
        Assert.True(WriteUsingToken(h, 0x2000, token, [(200, 3), (300, 7)]).IsGood);
        var expected = first.Concat(second).ToArray();
        Assert.Equal(expected.AsSpan(0, 3 * Block).ToArray(), ReadBack(h.Memory, 200 * Block, 3 * Block));
        Assert.Equal(expected.AsSpan(3 * Block).ToArray(), ReadBack(h.Memory, 300 * Block, 7 * Block));

        var status = Rrti(h, 0x2000);
        Assert.Equal(ScsiOpcode.WriteUsingTokenServiceAction, status[4]);
        Assert.Equal(0x01, status[5]);
        Assert.Equal(0xF1, status[15]);
        Assert.Equal(10ul, BinaryPrimitives.ReadUInt64BigEndian(status.AsSpan(16)));
    }

    [Fact]
    public void WriteUsingToken_OffsetIntoRod_AndMoreDestinationThanToken_WritesWhatTheTokenHas()
    {
        var h = new ScsiHarness();
        var data = Pattern(8 * Block, 3);
        h.Memory.Write(0, data, false);
        var token = Populate(h, 1, [(0, 8)]);

        Assert.True(WriteUsingToken(h, 2, token, [(100, 10)], offsetBlocks: 5).IsGood);

        Assert.Equal(data.AsSpan(5 * Block).ToArray(), ReadBack(h.Memory, 100 * Block, 3 * Block));
        Assert.All(ReadBack(h.Memory, 103 * Block, 7 * Block), b => Assert.Equal(0, b));
        var status = Rrti(h, 2);
        Assert.Equal(0x04, status[5]);
        Assert.Equal(3ul, BinaryPrimitives.ReadUInt64BigEndian(status.AsSpan(16)));
    }

    [Fact]
    public void WriteUsingToken_OnAnotherUnitOfTheScope_CopiesFromTheTokensSource()
    {
        var tokens = new RodTokenStore();
        var source = new ScsiHarness(scope: new Scope() { Tokens = tokens });
        var destination = new ScsiHarness(scope: new Scope(source.Unit) { Tokens = tokens });
        var data = Pattern(16 * Block, 4);
        source.Memory.Write(0, data, false);

        var token = Populate(source, 7, [(0, 16)]);
        Assert.True(WriteUsingToken(destination, 8, token, [(64, 16)]).IsGood);

        Assert.Equal(data, ReadBack(destination.Memory, 64 * Block, data.Length));
    }

    [Fact]
    public void WriteUsingToken_TokenOfAUnitOutsideTheScope_IsRemoteTokenUsage()
    {
        var tokens = new RodTokenStore();
        var source = new ScsiHarness(scope: new Scope() { Tokens = tokens });
        var destination = new ScsiHarness(scope: new Scope() { Tokens = tokens });
        var token = Populate(source, 1, [(0, 1)]);

        destination.AssertCheckCondition(WriteUsingToken(destination, 2, token, [(0, 1)]), SenseData.RemoteTokenUsageNotSupported);
    }

    [Fact]
    public void WriteUsingToken_UnknownExpiredAndDeletedTokens_AreRefused()
    {
        var clock = new ManualClock();
        var h = new ScsiHarness(scope: new Scope() { Tokens = new RodTokenStore(time: clock) });
        var token = Populate(h, 1, [(0, 1)], inactivitySeconds: 30);

        var forged = (byte[])token.Clone();
        forged[200] ^= 1;
        h.AssertCheckCondition(WriteUsingToken(h, 2, forged, [(9, 1)]), SenseData.TokenUnknown);

        Assert.True(WriteUsingToken(h, 3, token, [(9, 1)], deleteToken: true).IsGood);
        h.AssertCheckCondition(WriteUsingToken(h, 4, token, [(9, 1)]), SenseData.TokenUnknown);

        var other = Populate(h, 5, [(0, 1)], inactivitySeconds: 30);
        clock.Advance(TimeSpan.FromSeconds(31));
        h.AssertCheckCondition(WriteUsingToken(h, 6, other, [(9, 1)]), SenseData.TokenExpired);
    }

    [Fact]
    public void PopulateToken_PastTheTokenLimit_IsInsufficientResources()
    {
        var h = new ScsiHarness(scope: new Scope() { Tokens = new RodTokenStore(maxTokens: 2) });
        Populate(h, 1, [(0, 1)]);
        Populate(h, 2, [(0, 1)]);

        h.AssertCheckCondition(Run(h, PopulateCdb(3, PopulateList([(0, 1)], 0))), SenseData.InsufficientResources);
    }

    [Fact]
    public void WriteUsingToken_IntoReadOnlyUnit_IsWriteProtected_AndWritesNothing()
    {
        var tokens = new RodTokenStore();
        var source = new ScsiHarness(scope: new Scope() { Tokens = tokens });
        var snapshot = new ScsiHarness(device: new MemoryBlockDevice(16L << 20, Block, isReadOnly: true), scope: new Scope(source.Unit) { Tokens = tokens });
        source.Memory.Write(0, Pattern(Block, 5), false);
        var token = Populate(source, 1, [(0, 1)]);

        snapshot.AssertCheckCondition(WriteUsingToken(snapshot, 2, token, [(0, 1)]), SenseData.WriteProtected);
        Assert.All(ReadBack(snapshot.Memory, 0, Block), b => Assert.Equal(0, b));
    }

    [Fact]
    public void WriteUsingToken_BlockDeviceZeroToken_ZeroesTheRanges()
    {
        var h = new ScsiHarness();
        h.Memory.Write(0, Pattern(4 * Block, 6), false);
        var zero = new byte[RodTokenStore.TokenBytes];
        BinaryPrimitives.WriteUInt32BigEndian(zero, RodTokenStore.BlockDeviceZero);

        Assert.True(WriteUsingToken(h, 1, zero, [(1, 2)]).IsGood);

        var back = ReadBack(h.Memory, 0, 4 * Block);
        Assert.Contains(back.AsSpan(0, Block).ToArray(), b => b != 0);
        Assert.All(back.AsSpan(Block, 2 * Block).ToArray(), b => Assert.Equal(0, b));
        Assert.Contains(back.AsSpan(3 * Block).ToArray(), b => b != 0);
    }

    [Fact]
    public void PopulateToken_RangePastTheEnd_IsLbaOutOfRange_AndRrtiOfAnUnknownListIsInvalid()
    {
        var h = new ScsiHarness(sizeBytes: 1 << 20);
        h.AssertCheckCondition(Run(h, PopulateCdb(1, PopulateList([(2047, 2)], 0))), SenseData.LbaOutOfRange);
        h.AssertCheckCondition(h.Run(RrtiCdb(1), dataInBytes: 1024), SenseData.InvalidFieldInCdbAt(2));
    }

    private static byte[] Populate(ScsiHarness h, uint listId, (ulong Lba, uint Blocks)[] ranges, uint inactivitySeconds = 0)
    {
        Assert.True(Run(h, PopulateCdb(listId, PopulateList(ranges, inactivitySeconds))).IsGood);
        var info = Rrti(h, listId);
        Assert.Equal(ScsiOpcode.PopulateTokenServiceAction, info[4]);
        Assert.Equal(0x01, info[5]);
        var sense = info[13];
        Assert.Equal(2u + RodTokenStore.TokenBytes, BinaryPrimitives.ReadUInt32BigEndian(info.AsSpan(32 + sense)));
        return info.AsSpan(32 + sense + 4 + 2, RodTokenStore.TokenBytes).ToArray();
    }

    private static ScsiResult WriteUsingToken(ScsiHarness h, uint listId, byte[] token, (ulong Lba, uint Blocks)[] ranges, ulong offsetBlocks = 0, bool deleteToken = false)
    {
        // SBC-3 5.41.2: DATA LENGTH, DEL_TKN, OFFSET INTO ROD, ROD TOKEN, range descriptors from byte 536.
        var list = new byte[536 + (16 * ranges.Length)];
        BinaryPrimitives.WriteUInt16BigEndian(list, (ushort)(list.Length - 2));
        list[2] = deleteToken ? (byte)0x02 : (byte)0;
        BinaryPrimitives.WriteUInt64BigEndian(list.AsSpan(8), offsetBlocks);
        token.CopyTo(list, 16);
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(534), (ushort)(16 * ranges.Length));
        WriteRanges(list.AsSpan(536), ranges);
        return Run(h, TokenCdb(ScsiOpcode.WriteUsingTokenServiceAction, listId, list.Length), list);
    }

    private static byte[] PopulateList((ulong Lba, uint Blocks)[] ranges, uint inactivitySeconds)
    {
        var list = new byte[16 + (16 * ranges.Length)];
        BinaryPrimitives.WriteUInt16BigEndian(list, (ushort)(list.Length - 2));
        BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(4), inactivitySeconds);
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(14), (ushort)(16 * ranges.Length));
        WriteRanges(list.AsSpan(16), ranges);
        return list;
    }

    private static void WriteRanges(Span<byte> destination, (ulong Lba, uint Blocks)[] ranges)
    {
        for (var i = 0; i < ranges.Length; i++)
        {
            BinaryPrimitives.WriteUInt64BigEndian(destination[(i * 16)..], ranges[i].Lba);
            BinaryPrimitives.WriteUInt32BigEndian(destination[((i * 16) + 8)..], ranges[i].Blocks);
        }
    }

    private static (byte[] Cdb, byte[] List) PopulateCdb(uint listId, byte[] list) => (TokenCdb(ScsiOpcode.PopulateTokenServiceAction, listId, list.Length), list);

    private static ScsiResult Run(ScsiHarness h, (byte[] Cdb, byte[] List) command) => h.Run(command.Cdb, command.List);

    private static ScsiResult Run(ScsiHarness h, byte[] cdb, byte[] list) => h.Run(cdb, list);

    private static byte[] TokenCdb(byte serviceAction, uint listId, int listLength)
    {
        var cdb = new byte[16];
        cdb[0] = ScsiOpcode.ExtendedCopy;
        cdb[1] = serviceAction;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(6), listId);
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), (uint)listLength);
        return cdb;
    }

    private static byte[] RrtiCdb(uint listId)
    {
        var cdb = new byte[16];
        cdb[0] = ScsiOpcode.ReceiveCopyResults;
        cdb[1] = ScsiOpcode.ReceiveRodTokenInformationServiceAction;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(2), listId);
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), 1024);
        return cdb;
    }

    private static byte[] Rrti(ScsiHarness h, uint listId)
    {
        var result = h.Run(RrtiCdb(listId), dataInBytes: 1024);
        Assert.True(result.IsGood);
        Assert.Equal((uint)(result.DataInBytes - 4), BinaryPrimitives.ReadUInt32BigEndian(h.DataIn));
        return h.DataIn[..result.DataInBytes];
    }

    private sealed class ManualClock : TimeProvider
    {
        private DateTimeOffset _now = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);

        public override DateTimeOffset GetUtcNow() => _now;

        public void Advance(TimeSpan by) => _now += by;
    }
}
