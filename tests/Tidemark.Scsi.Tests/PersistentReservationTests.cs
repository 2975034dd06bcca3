using System.Buffers.Binary;

namespace Tidemark.Scsi.Tests;

public sealed class PersistentReservationTests
{
    private static byte[] Out(int action, int type = 0) => [0x5F, (byte)action, (byte)type, 0, 0, 0, 0, 0, 24, 0];

    private static byte[] Keys(ulong key, ulong actionKey)
    {
        var list = new byte[24];
        BinaryPrimitives.WriteUInt64BigEndian(list, key);
        BinaryPrimitives.WriteUInt64BigEndian(list.AsSpan(8), actionKey);
        return list;
    }

    [Fact]
    public void Register_ThenReadKeys_ListsKeyAndBumpsGeneration()
    {
        var h = new ScsiHarness();
        Assert.True(h.Run(Out(0), Keys(0, 0xABCD)).IsGood);

        var result = h.Run([0x5E, 0, 0, 0, 0, 0, 0, 1, 0, 0], dataInBytes: 256);
        Assert.True(result.IsGood);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn));
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32BigEndian(h.DataIn.AsSpan(4)));
        Assert.Equal(0xABCDul, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(8)));
    }

    [Fact]
    public void Register_WrongCurrentKey_ReturnsReservationConflict()
    {
        var h = new ScsiHarness();
        Assert.True(h.Run(Out(0), Keys(0, 1)).IsGood);
        Assert.Equal(ScsiStatus.ReservationConflict, h.Run(Out(0), Keys(2, 3)).Status);
    }

    [Fact]
    public void ReserveExclusiveAccess_OtherNexus_CannotReadUntilRelease()
    {
        var h = new ScsiHarness();
        var other = h.Unit.OpenNexus("iqn.2026-11.dev.tidemark:other,i,0x000000000001");
        Assert.True(h.Run(Out(0), Keys(0, 1)).IsGood);
        Assert.True(h.Run(Out(1, type: 3), Keys(1, 0)).IsGood);

        Assert.Equal(ScsiStatus.ReservationConflict, h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), dataInBytes: 512, nexus: other).Status);
        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), dataInBytes: 512).IsGood);

        Assert.True(h.Run(Out(2, type: 3), Keys(1, 0)).IsGood);
        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), dataInBytes: 512, nexus: other).IsGood);
    }

    [Fact]
    public void WriteExclusiveRegistrantsOnly_RegisteredNexusMayWrite()
    {
        var h = new ScsiHarness();
        var other = h.Unit.OpenNexus("iqn.2026-11.dev.tidemark:other,i,0x000000000001");
        var stranger = h.Unit.OpenNexus("iqn.2026-11.dev.tidemark:stranger,i,0x000000000001");
        Assert.True(h.Run(Out(0), Keys(0, 1)).IsGood);
        Assert.True(h.Run(Out(0), Keys(0, 2), nexus: other).IsGood);
        Assert.True(h.Run(Out(1, type: 5), Keys(1, 0)).IsGood);

        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512], nexus: other).IsGood);
        Assert.Equal(ScsiStatus.ReservationConflict, h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512], nexus: stranger).Status);
        Assert.True(h.Run(ScsiHarness.Cdb10(ScsiOpcode.Read10, 0, 1), dataInBytes: 512, nexus: stranger).IsGood);
    }

    [Fact]
    public void Preempt_HolderKey_MovesReservationAndRemovesRegistration()
    {
        var h = new ScsiHarness();
        var other = h.Unit.OpenNexus("iqn.2026-11.dev.tidemark:other,i,0x000000000001");
        Assert.True(h.Run(Out(0), Keys(0, 1)).IsGood);
        Assert.True(h.Run(Out(0), Keys(0, 2), nexus: other).IsGood);
        Assert.True(h.Run(Out(1, type: 1), Keys(1, 0)).IsGood);

        Assert.True(h.Run(Out(4, type: 1), Keys(2, 1), nexus: other).IsGood);

        Assert.Equal(ScsiStatus.ReservationConflict, h.Run(ScsiHarness.Cdb10(ScsiOpcode.Write10, 0, 1), new byte[512]).Status);
        h.Run([0x5E, 1, 0, 0, 0, 0, 0, 1, 0, 0], dataInBytes: 256);
        Assert.Equal(2ul, BinaryPrimitives.ReadUInt64BigEndian(h.DataIn.AsSpan(8)));
    }

    [Fact]
    public void PersistentReserveOut_WrongParameterListLength_ReturnsParameterListLengthError()
    {
        var h = new ScsiHarness();
        byte[] cdb = [0x5F, 0, 0, 0, 0, 0, 0, 0, 20, 0];
        h.AssertCheckCondition(h.Run(cdb, new byte[20]), SenseData.ParameterListLengthError);
    }

    [Fact]
    public void Registration_SameInitiatorPortReopened_IsKept()
    {
        var h = new ScsiHarness();
        const string Port = "iqn.2026-11.dev.tidemark:a,i,0x000000000001";
        var first = h.Unit.OpenNexus(Port);
        Assert.True(h.Run(Out(0), Keys(0, 7), nexus: first).IsGood);
        h.Unit.CloseNexus(first);

        var again = h.Unit.OpenNexus(Port);
        Assert.True(h.Run(Out(1, type: 1), Keys(7, 0), nexus: again).IsGood);
    }
}
