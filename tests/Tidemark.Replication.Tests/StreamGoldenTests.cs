using System.Buffers.Binary;
using Tidemark.Engine;
using ZstdSharp;

namespace Tidemark.Replication.Tests;

/// <summary>
/// The snapshot stream format (docs/STREAM-FORMAT.md), frozen: a full and an incremental stream of a
/// 64 KiB volume written by the code of 2026-12-06 must import to the same images forever after, and
/// re-encoding their header and every record's framing and checksum today must give the same bytes.
/// A failure means the format changed: keep version 1 readable and bump StreamFormat.Version.
/// </summary>
public sealed class StreamGoldenTests : IDisposable
{
    // Full stream of mail@monday: blocks 0-1 hold (i % 7), block 5 holds 0xAB (zstd DATA records, END).
    private const string FullStream = """
        VERNS1NUUk0BAAAA0wEAAHsiZm9ybWF0VmVyc2lvbiI6MSwic3RyZWFtSWQiOiJlN2MzZjQ0Yi03NTJhLTRjZjAtYjAwZi05
        OWQ0ZWYwNDE4OWMiLCJzb3VyY2VQb29sIjoiMmUxNGM5NWMtMjc4OS00YjEwLWJiN2UtODFlMmQ2ZmIzZTAyIiwidm9sdW1l
        IjoibWFpbCIsInNpemVCeXRlcyI6NjU1MzYsImxvZ2ljYWxCbG9ja1NpemVCeXRlcyI6NTEyLCJzbmFwc2hvdElkIjoiNzNk
        NTIwZGEtNWY3My00OGJiLTg0MzMtODI4MGYxNTQyMTZiIiwic25hcHNob3ROYW1lIjoibW9uZGF5Iiwic25hcHNob3RDcmVh
        dGVkQXQiOiIyMDI2LTEyLTA2VDA3OjUyOjA4LjQ4MDc5ODIrMDA6MDAiLCJiYXNlU25hcHNob3RJZCI6bnVsbCwiYmFzZVNu
        YXBzaG90TmFtZSI6bnVsbCwicmFuZ2VCeXRlcyI6MTIyODgsInJlc3VtZU9mZnNldCI6MCwiY3JlYXRlZEF0IjoiMjAyNi0x
        Mi0wNlQwNzo1MjowOC42NzI4NTE4KzAwOjAwIiwiaXNJbmNyZW1lbnRhbCI6ZmFsc2V9asy9RaN+ftIBAAAAAAAAAAAAAAAA
        AAAAAAAgAAABGQAAACi1L/1gAB99AAA4AAECAwQFBgEA9q++GAFqj+46mDmP4wEBAAAAAAAAAABQAAAAAAAAABAAAAETAAAA
        KLUv/WAAD00AABCrqwEA+/cBFr2ZIyad8iySAwIAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAACAAAAAAAAAAAwAAAAAAAAAAAA
        AAAAAAAUV/Ic6NGMGJ9SBq5AlRK/
        """;

    // Incremental mail@monday -> mail@tuesday: block 1 became 0xCD (DATA), block 5 was unmapped (ZERO).
    private const string IncrementalStream = """
        VERNS1NUUk0BAAAA+AEAAHsiZm9ybWF0VmVyc2lvbiI6MSwic3RyZWFtSWQiOiIwNWUxYzFmYi01MGJlLTRhN2YtYjYxMi1j
        YTIxODlmYWQyNWMiLCJzb3VyY2VQb29sIjoiMmUxNGM5NWMtMjc4OS00YjEwLWJiN2UtODFlMmQ2ZmIzZTAyIiwidm9sdW1l
        IjoibWFpbCIsInNpemVCeXRlcyI6NjU1MzYsImxvZ2ljYWxCbG9ja1NpemVCeXRlcyI6NTEyLCJzbmFwc2hvdElkIjoiZmMx
        NDBjMTQtMGJjMi00YTM2LWExNWQtMjczN2QxN2Q2ZjUyIiwic25hcHNob3ROYW1lIjoidHVlc2RheSIsInNuYXBzaG90Q3Jl
        YXRlZEF0IjoiMjAyNi0xMi0wNlQwNzo1MjowOC41NjY1MTM0KzAwOjAwIiwiYmFzZVNuYXBzaG90SWQiOiI3M2Q1MjBkYS01
        ZjczLTQ4YmItODQzMy04MjgwZjE1NDIxNmIiLCJiYXNlU25hcHNob3ROYW1lIjoibW9uZGF5IiwicmFuZ2VCeXRlcyI6ODE5
        MiwicmVzdW1lT2Zmc2V0IjowLCJjcmVhdGVkQXQiOiIyMDI2LTEyLTA2VDA3OjUyOjA4LjkxNzYzNzErMDA6MDAiLCJpc0lu
        Y3JlbWVudGFsIjp0cnVlfbpOngrbYUdxAQAAAAAAAAAAABAAAAAAAAAAEAAAARMAAAAotS/9YAAPTQAAEM3NAQD79wEWXfSR
        oLU98vYCAQAAAAAAAAAAUAAAAAAAAAAQAAAAAAAAAG+wWWSc1A+4AwIAAAAAAAAAAAAAAAAAAAAAAAAAACAAAAACAAAAAAAA
        AAAQAAAAAAAAABAAAAAAAABbTXC62fduUTlo6IGHA98V
        """;

    private static readonly Guid Monday = Guid.Parse("73d520da-5f73-48bb-8433-8280f154216b");
    private static readonly Guid Tuesday = Guid.Parse("fc140c14-0bc2-4a36-a15d-2737d17d6f52");

    private readonly string _dir = Directory.CreateTempSubdirectory("tidemark-golden-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void GoldenStreams_Import_ToTheImagesTheyWereWrittenFrom()
    {
        using var pool = Pool.Create(Path.Combine(_dir, "pool"), new PoolOptions { FirstStoreCapacityBytes = 16L << 20 });

        var full = SnapshotStreamReader.Import(pool, new MemoryStream(Convert.FromBase64String(FullStream)));
        var incremental = SnapshotStreamReader.Import(pool, new MemoryStream(Convert.FromBase64String(IncrementalStream)));

        Assert.Equal((2L, 12288L, 0L), (full.Records, full.DataBytes, full.ZeroBytes));
        Assert.Equal((2L, 4096L, 4096L), (incremental.Records, incremental.DataBytes, incremental.ZeroBytes));
        Assert.Equal(Monday, pool.GetSnapshot("mail@monday").Id);
        Assert.Equal(Tuesday, pool.GetSnapshot("mail@tuesday").Id);
        Assert.Equal(Image(tuesday: false), Read(pool, "mail@monday"));
        Assert.Equal(Image(tuesday: true), Read(pool, "mail@tuesday"));
    }

    [Theory]
    [InlineData(FullStream)]
    [InlineData(IncrementalStream)]
    public void GoldenStreams_ReencodedToday_GiveTheSameBytes(string base64)
    {
        var golden = Convert.FromBase64String(base64);
        var input = new MemoryStream(golden);
        var header = SnapshotStreamReader.ReadHeader(input);
        var output = new MemoryStream();
        SnapshotStreamWriter.WriteHeader(output, header);

        var seed = StreamFormat.Seed(header.StreamId);
        using var decompressor = new Decompressor();
        var recordHeader = new byte[StreamFormat.RecordHeaderBytes];
        var checksum = new byte[8];
        for (var type = RecordType.Data; type != RecordType.End;)
        {
            input.ReadExactly(recordHeader);
            type = (RecordType)recordHeader[0];
            var codec = (Codec)recordHeader[21];
            var payload = new byte[BinaryPrimitives.ReadInt32LittleEndian(recordHeader.AsSpan(22))];
            input.ReadExactly(payload);
            input.ReadExactly(checksum);
            var content = codec == Codec.Zstd ? decompressor.Unwrap(payload).ToArray() : payload;

            var reencoded = new byte[StreamFormat.RecordHeaderBytes];
            StreamFormat.WriteRecordHeader(
                reencoded,
                type,
                BinaryPrimitives.ReadUInt64LittleEndian(recordHeader.AsSpan(1)),
                BinaryPrimitives.ReadInt64LittleEndian(recordHeader.AsSpan(9)),
                BinaryPrimitives.ReadInt32LittleEndian(recordHeader.AsSpan(17)),
                codec,
                payload.Length);
            output.Write(reencoded);
            output.Write(payload);
            var sum = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(sum, StreamFormat.RecordChecksum(seed, reencoded, content));
            output.Write(sum);
        }

        Assert.Equal(golden.Length, input.Position);
        Assert.Equal(golden, output.ToArray());
    }

    [Fact]
    public void StreamEnums_KeepTheirValues()
    {
        Assert.Equal([1, 2, 3], Enum.GetValues<RecordType>().Select(v => (int)v));
        Assert.Equal([0, 1], Enum.GetValues<Codec>().Select(v => (int)v));
        Assert.Equal(1, StreamFormat.Version);
    }

    private static byte[] Image(bool tuesday)
    {
        var image = new byte[64 << 10];
        for (var i = 0; i < 8192; i++)
        {
            image[i] = (byte)(i % 7);
        }

        if (tuesday)
        {
            image.AsSpan(4096, 4096).Fill(0xCD);
        }
        else
        {
            image.AsSpan(5 * 4096, 4096).Fill(0xAB);
        }

        return image;
    }

    private static byte[] Read(Pool pool, string address)
    {
        var device = pool.OpenSnapshot(address);
        var image = new byte[device.SizeBytes];
        device.Read(0, image);
        return image;
    }
}
