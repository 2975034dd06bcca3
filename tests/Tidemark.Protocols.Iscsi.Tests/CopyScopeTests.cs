using System.Buffers.Binary;
using Tidemark.Scsi;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// Which units an EXTENDED COPY or WRITE USING TOKEN received by a LUN of the catalog may reach: its
/// own export's LUNs, and other exports the same initiator could log in to with what it presented.
/// </summary>
public sealed class CopyScopeTests
{
    private const string Initiator = "iqn.2026-11.dev.tidemark:host";
    private const string Own = "iqn.2026-11.dev.tidemark:own";
    private const string Open = "iqn.2026-11.dev.tidemark:open";
    private const string Closed = "iqn.2026-11.dev.tidemark:closed";
    private const string OtherChap = "iqn.2026-11.dev.tidemark:otherchap";
    private const string SameChap = "iqn.2026-11.dev.tidemark:samechap";
    private const string NoChap = "iqn.2026-11.dev.tidemark:nochap";
    private static readonly IscsiChapCredentials _chap = new("host", "host-secret-123");

    [Theory]
    [InlineData(Own, 1, true)]
    [InlineData(Open, 0, true)]
    [InlineData(SameChap, 0, true)]
    [InlineData(NoChap, 0, true)]
    [InlineData(Closed, 0, false)]
    [InlineData(OtherChap, 0, false)]
    public void ExtendedCopy_FromTheOwnLun_ReachesOnlyUnitsTheInitiatorCouldUse(string target, int lun, bool reachable)
    {
        using var catalog = Catalog(out var devices);
        var source = catalog.Targets.Single(t => t.Name == Own).Units[0];
        var destination = catalog.Targets.Single(t => t.Name == target).Units[lun];
        devices[(Own, 0)].Write(0, Enumerable.Repeat((byte)0x5A, 512).ToArray(), false);

        var list = XcopyList(Naa(source), Naa(destination));
        var sense = new byte[18];
        var result = source.Execute(source.OpenNexus($"{Initiator},i,0x1"), new ScsiCommand(XcopyCdb(list.Length), list, [], sense));

        var written = new byte[512];
        devices[(target, lun)].Read(0, written);
        if (reachable)
        {
            Assert.True(result.IsGood);
            Assert.All(written, b => Assert.Equal(0x5A, b));
        }
        else
        {
            Assert.Equal(ScsiStatus.CheckCondition, result.Status);
            Assert.True(SenseData.TryRead(sense, out var s));
            Assert.Equal(SenseKey.CopyAborted, s.Key);
            Assert.Equal((byte)0x0D, s.AdditionalSenseCode);
            Assert.All(written, b => Assert.Equal(0, b));
        }
    }

    [Fact]
    public void WriteUsingToken_OnAnotherExport_FindsTheTokenPopulatedOnThisOne()
    {
        using var catalog = Catalog(out var devices);
        var source = catalog.Targets.Single(t => t.Name == Own).Units[0];
        var destination = catalog.Targets.Single(t => t.Name == Open).Units[0];
        devices[(Own, 0)].Write(512, Enumerable.Repeat((byte)0xC3, 512).ToArray(), false);
        var sense = new byte[18];

        // POPULATE TOKEN of LBA 1, then RECEIVE ROD TOKEN INFORMATION for the token.
        var populate = new byte[32];
        BinaryPrimitives.WriteUInt16BigEndian(populate, 30);
        BinaryPrimitives.WriteUInt16BigEndian(populate.AsSpan(14), 16);
        BinaryPrimitives.WriteUInt64BigEndian(populate.AsSpan(16), 1);
        BinaryPrimitives.WriteUInt32BigEndian(populate.AsSpan(24), 1);
        var sourceNexus = source.OpenNexus($"{Initiator},i,0x1");
        Assert.True(source.Execute(sourceNexus, new ScsiCommand(TokenCdb(0x83, 0x10, 5, populate.Length, 6), populate, [], sense)).IsGood);
        var info = new byte[1024];
        var rrti = source.Execute(sourceNexus, new ScsiCommand(TokenCdb(0x84, 0x07, 5, 1024, 2), [], info, sense));
        Assert.True(rrti.IsGood);
        var token = info.AsSpan(32 + info[13] + 4 + 2, 512).ToArray();

        // WRITE USING TOKEN on a LUN of another export, to its LBA 0.
        var write = new byte[536 + 16];
        BinaryPrimitives.WriteUInt16BigEndian(write, (ushort)(write.Length - 2));
        token.CopyTo(write, 16);
        BinaryPrimitives.WriteUInt16BigEndian(write.AsSpan(534), 16);
        BinaryPrimitives.WriteUInt32BigEndian(write.AsSpan(536 + 8), 1);
        var result = destination.Execute(destination.OpenNexus($"{Initiator},i,0x2"), new ScsiCommand(TokenCdb(0x83, 0x11, 6, write.Length, 6), write, [], sense));

        Assert.True(result.IsGood);
        var copied = new byte[512];
        devices[(Open, 0)].Read(0, copied);
        Assert.All(copied, b => Assert.Equal(0xC3, b));
    }

    private static IscsiTargetCatalog Catalog(out Dictionary<(string, int), MemoryBlockDevice> devices)
    {
        var made = new Dictionary<(string, int), MemoryBlockDevice>();
        IscsiLunDefinition Lun(string target, int lun) => new(lun, made[(target, lun)] = new MemoryBlockDevice(1 << 20));
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Own, [Lun(Own, 0), Lun(Own, 1)]) { Chap = _chap });
        catalog.AddOrUpdate(new IscsiTargetDefinition(Open, [Lun(Open, 0)]) { Chap = _chap });
        catalog.AddOrUpdate(new IscsiTargetDefinition(Closed, [Lun(Closed, 0)]) { Chap = _chap, AllowedInitiators = ["iqn.2026-11.dev.tidemark:someone-else"] });
        catalog.AddOrUpdate(new IscsiTargetDefinition(OtherChap, [Lun(OtherChap, 0)]) { Chap = new("host", "another-secret-1") });
        catalog.AddOrUpdate(new IscsiTargetDefinition(SameChap, [Lun(SameChap, 0)]) { Chap = new("host", "host-secret-123"), AllowedInitiators = [Initiator] });
        catalog.AddOrUpdate(new IscsiTargetDefinition(NoChap, [Lun(NoChap, 0)]));
        devices = made;
        return catalog;
    }

    private static byte[] Naa(ScsiLogicalUnit unit)
    {
        var page = new byte[256];
        var result = unit.Execute(unit.OpenNexus(), new ScsiCommand([0x12, 1, 0x83, 1, 0, 0], [], page, new byte[18]));
        Assert.True(result.IsGood);
        return page.AsSpan(8, page[7]).ToArray();
    }

    /// <summary>One identification CSCD for each unit (source 0, destination 1) and one block-to-block segment of LBA 0.</summary>
    private static byte[] XcopyList(byte[] sourceNaa, byte[] destinationNaa)
    {
        var list = new byte[16 + 64 + 28];
        BinaryPrimitives.WriteUInt16BigEndian(list.AsSpan(2), 64);
        BinaryPrimitives.WriteUInt32BigEndian(list.AsSpan(8), 28);
        for (var i = 0; i < 2; i++)
        {
            var d = list.AsSpan(16 + (32 * i), 32);
            d[0] = 0xE4;
            d[4] = 0x01;
            d[5] = 0x03;
            d[7] = 16;
            (i == 0 ? sourceNaa : destinationNaa).CopyTo(d[8..]);
            d[30] = 0x02;
        }

        var s = list.AsSpan(16 + 64);
        s[0] = 0x02;
        BinaryPrimitives.WriteUInt16BigEndian(s[2..], 0x18);
        BinaryPrimitives.WriteUInt16BigEndian(s[6..], 1);
        BinaryPrimitives.WriteUInt16BigEndian(s[10..], 1);
        return list;
    }

    private static byte[] XcopyCdb(int length)
    {
        var cdb = new byte[16];
        cdb[0] = 0x83;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), (uint)length);
        return cdb;
    }

    private static byte[] TokenCdb(byte opcode, byte serviceAction, uint listId, int length, int listIdOffset)
    {
        var cdb = new byte[16];
        cdb[0] = opcode;
        cdb[1] = serviceAction;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(listIdOffset), listId);
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), (uint)length);
        return cdb;
    }
}
