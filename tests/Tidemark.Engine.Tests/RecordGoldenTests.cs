using System.Text;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Every record kind the pool persists, as today's code writes it: each golden sample must decode
/// to the same values forever after, and encoding those values today must give the same bytes. A
/// failure here means a persisted layout changed: keep the old one readable and bump the format
/// (docs/adr/0011-control-plane-state.md, "Format versions"), never edit a sample to make it pass.
/// </summary>
public sealed class RecordGoldenTests
{
    private static readonly DateTimeOffset At = new(2026, 12, 6, 7, 45, 0, TimeSpan.Zero);
    private static readonly Guid PoolId = Guid.Parse("0b7e8a64-3c1f-4d2a-9e55-6a1b2c3d4e5f");
    private static readonly Guid VolumeId = Guid.Parse("5a4e3c2b-1d0f-4e9a-8b7c-6d5e4f3a2b1c");
    private static readonly Guid SnapshotId = Guid.Parse("9c8b7a69-5847-4362-a150-f0e1d2c3b4a5");

    [Fact]
    public void PoolRecord_GoldenSample_DecodesAndReencodesIdentically() =>
        Check(
            """
            5B97F11D0100 {"PoolId":"0b7e8a64-3c1f-4d2a-9e55-6a1b2c3d4e5f","FormatVersion":2,"CreatedAt":"2026-12-06T07:45:00+00:00","NextLineage":7}
            """,
            new PoolRecord { PoolId = PoolId, FormatVersion = 2, CreatedAt = At, NextLineage = 7 },
            r => (r.PoolId, r.FormatVersion, r.CreatedAt, r.NextLineage));

    [Fact]
    public void StoreRecord_GoldenSample_DecodesAndReencodesIdentically() =>
        Check(
            """
            813D7D280100 {"Index":1,"Path":"/srv/tidemark/store-1.dat","Kind":0,"CapacityBytes":1099511627776}
            """,
            new StoreRecord { Index = 1, Path = "/srv/tidemark/store-1.dat", Kind = StoreKind.File, CapacityBytes = 1L << 40 },
            r => (r.Index, r.Path, r.Kind, r.CapacityBytes));

    // A RADOS store's path is its whole location (ADR 0017); the JSON writer escapes its '&'.
    [Fact]
    public void StoreRecord_RadosGoldenSample_DecodesAndReencodesIdentically() =>
        Check(
            """
            70D971330100 {"Index":2,"Path":"rados:rbd/tidemark?conf=/etc/ceph/ceph.conf\u0026id=tidemark\u0026timeout=30","Kind":2,"CapacityBytes":1099511627776}
            """,
            new StoreRecord { Index = 2, Path = "rados:rbd/tidemark?conf=/etc/ceph/ceph.conf&id=tidemark&timeout=30", Kind = StoreKind.Rados, CapacityBytes = 1L << 40 },
            r => (r.Index, r.Path, r.Kind, r.CapacityBytes));

    [Fact]
    public void VolumeRecord_GoldenSample_DecodesAndReencodesIdentically() =>
        Check(
            """
            E0C103730100 {"Id":"5a4e3c2b-1d0f-4e9a-8b7c-6d5e4f3a2b1c","Name":"restore","Kind":1,"Lineage":5,"SizeBytes":10737418240,"LogicalBlockSize":512,"CreatedAt":"2026-12-06T07:45:00+00:00","Origin":"mail@monday","Lineages":[3,5]}
            """,
            new VolumeRecord
            {
                Id = VolumeId,
                Name = "restore",
                Kind = VolumeKind.View,
                Lineage = 5,
                SizeBytes = 10L << 30,
                LogicalBlockSize = 512,
                CreatedAt = At,
                Origin = "mail@monday",
                Lineages = [3, 5],
            },
            r => (r.Id, r.Name, r.Kind, r.Lineage, r.SizeBytes, r.LogicalBlockSize, r.CreatedAt, r.Origin, string.Join(',', r.Lineages)));

    [Fact]
    public void LineageRecord_GoldenSample_DecodesAndReencodesIdentically() =>
        Check(
            """
            63A51FD60100 {"Id":5,"Volume":"5a4e3c2b-1d0f-4e9a-8b7c-6d5e4f3a2b1c","ParentLineage":3,"ParentEpoch":41,"Epoch":9,"State":1,"BaseMappedBlocks":1234}
            """,
            new LineageRecord { Id = 5, Volume = VolumeId, ParentLineage = 3, ParentEpoch = 41, Epoch = 9, State = LineageState.Frozen, BaseMappedBlocks = 1234 },
            r => (r.Id, r.Volume, r.ParentLineage, r.ParentEpoch, r.Epoch, r.State, r.BaseMappedBlocks));

    [Fact]
    public void SnapshotRecord_GoldenSample_DecodesAndReencodesIdentically() =>
        Check(
            """
            A5B4DB090100 {"Lineage":3,"Id":"9c8b7a69-5847-4362-a150-f0e1d2c3b4a5","MappedBlocks":4096,"Epoch":41,"Volume":"5a4e3c2b-1d0f-4e9a-8b7c-6d5e4f3a2b1c","Name":"monday","CreatedAt":"2026-12-06T07:45:00+00:00","SizeBytes":10737418240,"State":1,"HoldUntil":"2027-01-05T07:45:00+00:00","Held":true,"HoldReason":"legal hold 2026-17","GroupSnapshot":"erp/monday"}
            """,
            new SnapshotRecord
            {
                Lineage = 3,
                Id = SnapshotId,
                MappedBlocks = 4096,
                Epoch = 41,
                Volume = VolumeId,
                Name = "monday",
                CreatedAt = At,
                SizeBytes = 10L << 30,
                State = SnapshotState.Hidden,
                HoldUntil = At.AddDays(30),
                Held = true,
                HoldReason = "legal hold 2026-17",
                GroupSnapshot = "erp/monday",
            },
            r => (r.Lineage, r.Id, r.MappedBlocks, r.Epoch, r.Volume, r.Name, r.CreatedAt, r.SizeBytes, r.State, r.HoldUntil, r.Held, r.HoldReason, r.GroupSnapshot));

    [Fact]
    public void GroupRecord_GoldenSample_DecodesAndReencodesIdentically() =>
        Check(
            """
            B5C2B0A80100 {"Name":"erp","Members":["5a4e3c2b-1d0f-4e9a-8b7c-6d5e4f3a2b1c","9c8b7a69-5847-4362-a150-f0e1d2c3b4a5"],"CreatedAt":"2026-12-06T07:45:00+00:00"}
            """,
            new GroupRecord { Name = "erp", Members = [VolumeId, SnapshotId], CreatedAt = At },
            r => (r.Name, string.Join(',', r.Members), r.CreatedAt));

    [Fact]
    public void SnapshotRecord_WrittenBeforeIdsAndCounting_LoadsWithTheirEmptyValues()
    {
        var json = Encoding.UTF8.GetBytes("""{"Lineage":3,"Epoch":41,"Volume":"5a4e3c2b-1d0f-4e9a-8b7c-6d5e4f3a2b1c","Name":"monday","CreatedAt":"2026-12-06T07:45:00+00:00","SizeBytes":1048576,"State":0,"Held":false}""");
        byte[] bytes = [0, 0, 0, 0, 1, 0, .. json];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes, System.IO.Hashing.Crc32.HashToUInt32(bytes.AsSpan(4)));

        var record = RecordCodec.Decode<SnapshotRecord>(bytes, "an old snapshot");

        Assert.Equal((Guid.Empty, (long?)null, "monday", SnapshotState.Active), (record.Id, record.MappedBlocks, record.Name, record.State));
    }

    [Fact]
    public void PersistedEnums_KeepTheirValues()
    {
        Assert.Equal([0, 1, 2], Enum.GetValues<LineageState>().Select(v => (int)v));
        Assert.Equal([0, 1, 2], Enum.GetValues<SnapshotState>().Select(v => (int)v));
        Assert.Equal([0, 1, 2], Enum.GetValues<EntryKind>().Select(v => (int)v));
        Assert.Equal("File=0,Device=1,Rados=2", string.Join(',', Enum.GetValues<StoreKind>().Select(v => $"{v}={(int)v}")));
        Assert.Equal("Volume=0,View=1", string.Join(',', Enum.GetValues<VolumeKind>().Select(v => $"{v}={(int)v}")));
    }

    [Fact]
    public void Keys_GoldenLayouts_AreUnchanged()
    {
        Span<byte> history = stackalloc byte[Keys.HistoryKeyBytes];
        Keys.WriteHistoryKey(history, 5, 0x0102, 9);
        Span<byte> death = stackalloc byte[Keys.HistoryKeyBytes];
        Keys.WriteDeathKey(death, 5, 9, 0x0102);
        string[] actual =
        [
            Convert.ToHexString(Keys.PoolKey()),
            Convert.ToHexString(Keys.StoreKey(1)),
            Convert.ToHexString(Keys.BitmapKey(1, 2)),
            Convert.ToHexString(Keys.VolumeKey(VolumeId)),
            Convert.ToHexString(Keys.LineageKey(5)),
            Convert.ToHexString(Keys.SnapshotKey(5, 41)),
            Convert.ToHexString(Keys.GroupKey("erp")),
            Convert.ToHexString(Keys.LivePageKey(5, 3)),
            Convert.ToHexString(history),
            Convert.ToHexString(death),
            Convert.ToHexString(Keys.Prefix(Keys.Counters, 5)),
        ];
        string[] golden =
        [
            "50",
            "540001",
            "41000100000002",
            "565A4E3C2B1D0F4E9A8B7C6D5E4F3A2B1C",
            "4E00000005",
            "53000000050000000000000029",
            "47657270",
            "4C000000050000000000000003",
            "480000000500000000000001020000000000000009",
            "440000000500000000000000090000000000000102",
            "4300000005",
        ];
        Assert.True(golden.SequenceEqual(actual), "actual: " + string.Join(" | ", actual));
    }

    [Fact]
    public void MapEntryAndDelta_GoldenBytes_DecodeAndReencodeIdentically()
    {
        const string EntryGolden = "36120000000100002900000000000000";
        const string DeltaGolden = "440336120000000100002900000000000000C801000000000000002A00000000000000";
        var entry = MapEntry.Mapped(Phys.Make(1, 0x1234), 41);
        var bytes = new byte[MapEntry.Bytes];
        entry.Write(bytes);
        Assert.True(EntryGolden == Convert.ToHexString(bytes), "actual: " + Convert.ToHexString(bytes));
        Assert.Equal(entry, MapEntry.Read(Convert.FromHexString(EntryGolden)));
        Assert.Equal(EntryKind.Zero, MapEntry.Read(Convert.FromHexString("0100000000000000" + "2A00000000000000")).Kind);

        var page = new byte[MapPage.Bytes];
        var present = new bool[MapPage.BlocksPerPage];
        entry.Write(page.AsSpan(3 * MapEntry.Bytes));
        present[3] = true;
        MapEntry.Zero(42).Write(page.AsSpan(200 * MapEntry.Bytes));
        present[200] = true;
        var delta = new byte[MapPageDelta.MaxBytes];
        var length = MapPageDelta.Write(page, present, delta);
        var deltaHex = Convert.ToHexString(delta, 0, length);
        Assert.True(DeltaGolden == deltaHex, "actual: " + deltaHex);

        var applied = new byte[MapPage.Bytes];
        MapPageDelta.Apply(Convert.FromHexString(DeltaGolden), applied);
        Assert.Equal(page, applied);
    }

    [Fact]
    public void LineageCounters_GoldenBytes_AreUnchanged_AndLoadAsWritten()
    {
        // [own mapped blocks: i64 BE][blocks overriding the parent: i64 BE] under key C lineage.
        const string Golden = "0000000000000002" + "0000000000000001";
        using var temp = new TempPool(16L << 20);
        var volume = temp.Pool.CreateVolume("v", 1L << 20);
        volume.Write(0, Block(1), forceUnitAccess: false);
        volume.Write(5 * 4096, Block(2), forceUnitAccess: false);
        temp.Pool.CreateSnapshot("v", "s");
        var view = temp.Pool.CreateView("v@s", "w");
        view.Write(5 * 4096, Block(3), forceUnitAccess: false); // overrides a parent block
        view.Write(9 * 4096, Block(4), forceUnitAccess: false); // a block of its own
        temp.Pool.Flush();

        var stored = Convert.ToHexString(temp.Pool.Meta.Get(Keys.Prefix(Keys.Counters, view.Lineage.Id))!);

        Assert.True(Golden == stored, "actual: " + stored);
        var reopened = temp.Reopen().GetVolume("w").Lineage;
        Assert.Equal((2L, 1L), reopened.CountersForVerify());

        static byte[] Block(byte value)
        {
            var block = new byte[4096];
            block.AsSpan().Fill(value);
            return block;
        }
    }

    [Fact]
    public void StoreHeader_GoldenBytes_AreUnchanged()
    {
        const string Golden = "544944454D41524B2D53544F5245000001000000648A7E0B1F3C2A4D9E556A1B2C3D4E5F01000000BA1D4527";
        var header = Pool.StoreHeader(PoolId, 1);
        var hex = Convert.ToHexString(header, 0, 44);
        Assert.True(Golden == hex, "actual: " + hex);
        Assert.True(header.AsSpan(44).IndexOfAnyExcept((byte)0) < 0);
    }

    /// <summary>
    /// The sample is the record's 6-byte prefix (CRC-32, record format) in hex, a space, then its
    /// JSON, so a reviewer sees what changed.
    /// </summary>
    private static void Check<T, TValues>(string golden, T record, Func<T, TValues> values)
    {
        var encoded = RecordCodec.Encode(record);
        var actual = Convert.ToHexString(encoded, 0, 6) + " " + Encoding.UTF8.GetString(encoded, 6, encoded.Length - 6);
        Assert.True(golden == actual, "actual: " + actual);

        var space = golden.IndexOf(' ', StringComparison.Ordinal);
        byte[] goldenBytes = [.. Convert.FromHexString(golden[..space]), .. Encoding.UTF8.GetBytes(golden[(space + 1)..])];
        Assert.Equal(values(record), values(RecordCodec.Decode<T>(goldenBytes, "a golden sample")));
    }
}
