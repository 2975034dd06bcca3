using System.Security.Cryptography;
using Tidemark.Engine;

namespace Tidemark.Replication.Tests;

/// <summary>Snapshot streams between two real pools: round trips, chains of increments, damage, replay, resume.</summary>
public sealed class SnapshotStreamTests : IDisposable
{
    private const long Size = 32L << 20;
    private readonly string _dir = Directory.CreateTempSubdirectory("tidemark-stream-").FullName;
    private readonly Pool _source;
    private readonly Pool _target;
    private readonly Random _random = new(7);

    public SnapshotStreamTests()
    {
        _source = Pool.Create(Path.Combine(_dir, "source"), new PoolOptions { FirstStoreCapacityBytes = 256L << 20 });
        _target = Pool.Create(Path.Combine(_dir, "target"), new PoolOptions { FirstStoreCapacityBytes = 256L << 20 });
        _source.CreateVolume("mail", Size);
    }

    public void Dispose()
    {
        _source.Dispose();
        _target.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void FullThenIncrementals_RecreateEverySnapshotExactly_WithTheSourcesIds()
    {
        var mail = _source.GetVolume("mail");
        WriteRandom(mail, 40);
        _source.CreateSnapshot("mail", "s1");
        Import(Export("mail@s1"));
        var sizes = new List<long>();
        for (var i = 2; i <= 4; i++)
        {
            WriteRandom(mail, 15);
            mail.Unmap(_random.Next(0, 100) * 65536L, 131072);
            mail.WriteZeroes(_random.Next(0, 100) * 65536L, 8192, mayUnmap: false);
            if (i == 3)
            {
                _source.ResizeVolume("mail", Size + (8L << 20));
                mail.Write(Size + 4096, RandomBytes(8192), false);
            }

            _source.CreateSnapshot("mail", $"s{i}");
            var stream = Export($"mail@s{i}", $"mail@s{i - 1}");
            sizes.Add(stream.Length);
            var result = Import(stream);
            Assert.True(result.Header.IsIncremental);
        }

        foreach (var name in new[] { "s1", "s2", "s3", "s4" })
        {
            Assert.Equal(Hash(_source, $"mail@{name}"), Hash(_target, $"mail@{name}"));
            Assert.Equal(_source.GetSnapshot($"mail@{name}").Id, _target.GetSnapshot($"mail@{name}").Id);
        }

        Assert.All(sizes, s => Assert.True(s < 40L * 65536 * 2, $"an increment of {s} bytes is not small"));
        Assert.True(_target.Verify().IsClean);
    }

    [Fact]
    public void Incremental_SendsOnlyChangedBlocks_Compressed()
    {
        var mail = _source.GetVolume("mail");
        WriteRandom(mail, 100);
        _source.CreateSnapshot("mail", "a");
        Import(Export("mail@a"));
        var text = new byte[4096];
        "compressible text block "u8.ToArray().CopyTo(text, 0);
        for (var i = 0; i < 10; i++)
        {
            mail.Write(i * 1048576L, text, false); // one 4 KiB block in each of ten 1 MiB regions
        }

        _source.CreateSnapshot("mail", "b");

        var delta = Export("mail@b", "mail@a");

        Assert.True(delta.Length < 10 * 4096, $"{delta.Length} bytes for ten compressible 4 KiB blocks");
        Import(delta);
        Assert.Equal(Hash(_source, "mail@b"), Hash(_target, "mail@b"));
    }

    [Fact]
    public void Full_OfIncompressibleThenCompressibleData_StaysNearRawSize_AndStillCompressesLater()
    {
        var mail = _source.GetVolume("mail");
        mail.Write(0, RandomBytes(8 << 20), false); // 8 MiB that zstd cannot shrink
        var text = new byte[1 << 20];
        for (var at = 0; at + 32 <= text.Length; at += 32)
        {
            "compressible mail text, 32 bytes"u8.CopyTo(text.AsSpan(at));
        }

        for (var mib = 16; mib < 32; mib++)
        {
            mail.Write(mib * 1048576L, text, false); // 16 MiB that compresses very well, far enough after
        }

        _source.CreateSnapshot("mail", "mixed");

        var stream = Export("mail@mixed");

        // Raw would be 24 MiB plus framing: the random part is sent raw (never larger), and the text,
        // after compression was skipped for a while, is compressed again.
        Assert.True(stream.Length < (8 << 20) + (6 << 20), $"{stream.Length} bytes for 8 MiB random and 16 MiB text (24 MiB raw)");
        Assert.True(stream.Length > 8 << 20);
        Import(stream);
        Assert.Equal(Hash(_source, "mail@mixed"), Hash(_target, "mail@mixed"));
    }

    [Theory]
    [InlineData("header")]
    [InlineData("payload")]
    [InlineData("checksum")]
    [InlineData("end")]
    public void FlippedByte_IsRefused_AndTargetKeepsItsSnapshots(string where)
    {
        var (before, stream) = PrepareIncrement();
        var bytes = stream.ToArray();
        var at = where switch
        {
            "header" => 30,
            "payload" => bytes.Length / 2,
            "checksum" => bytes.Length - 32 - 8 - 8 - 30,
            _ => bytes.Length - 3,
        };
        bytes[at] ^= 0x40;

        var error = Assert.ThrowsAny<Exception>(() => Import(new MemoryStream(bytes)));

        Assert.True(error is StreamImportException or StorageException { Error: StorageError.Corrupt }, error.ToString());
        Assert.Contains("damaged", error.Message, StringComparison.Ordinal);
        AssertUnchanged(before);
    }

    [Fact]
    public void Truncation_AnywhereIsRefused_AndTargetKeepsItsSnapshots()
    {
        var (before, stream) = PrepareIncrement();
        var bytes = stream.ToArray();
        foreach (var length in new[] { 0, 10, 200, bytes.Length / 3, bytes.Length / 2, bytes.Length - 9, bytes.Length - 1 })
        {
            var error = Assert.ThrowsAny<Exception>(() => Import(new MemoryStream(bytes, 0, length)));
            Assert.True(error is StreamImportException or StorageException, error.ToString());
            AssertUnchanged(before);
        }
    }

    [Fact]
    public void Replay_WrongBase_AndChangedTarget_AreRefusedWithoutChange()
    {
        var (before, stream) = PrepareIncrement();
        var bytes = stream.ToArray();
        Import(new MemoryStream(bytes));
        var afterImport = State();

        var replay = Assert.Throws<StorageException>(() => Import(new MemoryStream(bytes)));
        Assert.Equal(afterImport, State());

        _source.CreateSnapshot("mail", "never-sent");
        _source.GetVolume("mail").Write(0, RandomBytes(4096), false);
        _source.CreateSnapshot("mail", "after-it");
        var wrongBase = Assert.Throws<StorageException>(() => Import(Export("mail@after-it", "mail@never-sent")));
        Assert.Equal(afterImport, State());
        _target.GetVolume("mail").Write(0, RandomBytes(4096), false);
        _source.CreateSnapshot("mail", "s3");
        var changed = Assert.Throws<BaseChangedException>(() => Import(Export("mail@s3", "mail@s2")));
        Assert.Equal(["s1", "s2"], _target.ListSnapshots("mail").Select(s => s.Name));

        Assert.Equal(StorageError.AlreadyExists, replay.Error);
        Assert.Contains("replayed", replay.Message, StringComparison.Ordinal);
        Assert.Equal(StorageError.NotFound, wrongBase.Error);
        Assert.Contains("builds on", wrongBase.Message, StringComparison.Ordinal);
        Assert.Contains("roll it back", changed.Message, StringComparison.Ordinal);
        Assert.Equal(StorageError.InvalidArgument, changed.Error);
        Assert.Equal("mail@s2", changed.BaseSnapshot); // what a fail-back names as the common snapshot
        Assert.NotEqual(before, afterImport);
    }

    [Fact]
    public void InterruptedTransfer_ResumesFromTheAppliedOffset_AndEndsIdentical()
    {
        var mail = _source.GetVolume("mail");
        WriteRandom(mail, 200);
        _source.CreateSnapshot("mail", "big");
        var bytes = Export("mail@big").ToArray();

        var cut = Assert.Throws<StreamImportException>(() => SnapshotStreamReader.Import(_target, new MemoryStream(bytes, 0, bytes.Length / 2), new StreamImportOptions { KeepPartial = true }));
        Assert.True(cut.AppliedOffset > 0);
        Assert.Equal(_source.ListSnapshots("mail").Single(s => s.Name == "big").Id, cut.SnapshotId); // what a resume must match
        Assert.Empty(_target.ListSnapshots("mail"));
        var rest = new MemoryStream();
        SnapshotStreamWriter.Write(_source, "mail@big", null, rest, new StreamExportOptions { ResumeOffset = cut.AppliedOffset });
        rest.Position = 0;
        var resumed = SnapshotStreamReader.Import(_target, rest, new StreamImportOptions { Resume = true });

        Assert.True(rest.Length < bytes.Length * 3 / 4, "the resumed stream starts where the first one stopped");
        Assert.Equal("big", resumed.Snapshot!.Name);
        Assert.Equal(Hash(_source, "mail@big"), Hash(_target, "mail@big"));
    }

    [Fact]
    public void NotAStream_IsRefusedClearly()
    {
        var error = Assert.Throws<StorageException>(() => SnapshotStreamReader.Import(_target, new MemoryStream("hello world, not a stream"u8.ToArray())));

        Assert.Contains("not a Tidemark snapshot stream", error.Message, StringComparison.Ordinal);
        Assert.Empty(_target.Volumes);
    }

    private (string Before, MemoryStream Stream) PrepareIncrement()
    {
        var mail = _source.GetVolume("mail");
        WriteRandom(mail, 30);
        _source.CreateSnapshot("mail", "s1");
        Import(Export("mail@s1"));
        WriteRandom(mail, 30);
        _source.CreateSnapshot("mail", "s2");
        return (State(), Export("mail@s2", "mail@s1"));
    }

    private string State() =>
        string.Join(",", _target.ListSnapshots("mail").Select(s => s.Name)) + "|" + Convert.ToHexString(HashDevice(_target.GetVolume("mail")));

    private void AssertUnchanged(string before)
    {
        Assert.Equal(before, State());
        Assert.True(_target.Verify().IsClean);
    }

    private MemoryStream Export(string snapshot, string? from = null)
    {
        var stream = new MemoryStream();
        SnapshotStreamWriter.Write(_source, snapshot, from, stream);
        stream.Position = 0;
        return stream;
    }

    private StreamImportResult Import(Stream stream)
    {
        try
        {
            return SnapshotStreamReader.Import(_target, stream);
        }
        catch (StreamImportException ex) when (ex.InnerException is StorageException { Error: not StorageError.Corrupt } inner)
        {
            throw inner;
        }
    }

    private void WriteRandom(Volume volume, int writes)
    {
        for (var i = 0; i < writes; i++)
        {
            var length = 4096 * _random.Next(1, 17);
            var offset = 4096L * _random.Next(0, (int)((Size - length) / 4096));
            volume.Write(offset, RandomBytes(length), false);
        }
    }

    private byte[] RandomBytes(int length)
    {
        var bytes = new byte[length];
        _random.NextBytes(bytes);
        return bytes;
    }

    private static string Hash(Pool pool, string address) => Convert.ToHexString(HashDevice(pool.OpenSnapshot(address)));

    private static byte[] HashDevice(IBlockDevice device)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 20];
        for (var offset = 0L; offset < device.SizeBytes; offset += buffer.Length)
        {
            var chunk = buffer.AsSpan(0, (int)Math.Min(buffer.Length, device.SizeBytes - offset));
            device.Read(offset, chunk);
            sha.AppendData(chunk);
        }

        return sha.GetHashAndReset();
    }
}
