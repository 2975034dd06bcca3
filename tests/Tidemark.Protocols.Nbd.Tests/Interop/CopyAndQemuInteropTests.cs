using System.Security.Cryptography;
using System.Text.Json;
using Tidemark.TestKit;
using Xunit.Abstractions;

namespace Tidemark.Protocols.Nbd.Tests.Interop;

/// <summary>nbdcopy (libnbd-bin), qemu-img and qemu-io (qemu-utils) and fio's nbd engine against the server.</summary>
[Collection(nameof(InteropCollection))]
public sealed class CopyAndQemuInteropTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("tidemark-nbd-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task NbdCopy_DeviceToFile_HashMatchesDevice()
    {
        var device = new MemoryBlockDevice(32 * 1024 * 1024);
        var random = new Random(1);
        for (var i = 0; i < 64; i++)
        {
            var data = new byte[65536];
            random.NextBytes(data);
            device.Write(random.Next(0, 512) * 65536L, data, false);
        }

        await using var host = new TcpNbdHost(Catalog(device));
        var file = Path.Combine(_directory, "copy.img");

        (await ProcessRunner.RunAsync("nbdcopy", host.Url("vol"), file)).AssertSuccess();

        Assert.Equal(Hash(device), SHA256.HashData(await File.ReadAllBytesAsync(file)));
    }

    [Fact]
    public async Task NbdCopy_FileToDevice_DeviceHoldsFileContents()
    {
        var contents = new byte[16 * 1024 * 1024];
        new Random(2).NextBytes(contents.AsSpan(0, 6 * 1024 * 1024));
        new Random(3).NextBytes(contents.AsSpan(10 * 1024 * 1024, 1024 * 1024));
        var file = Path.Combine(_directory, "source.img");
        await File.WriteAllBytesAsync(file, contents);
        var device = new MemoryBlockDevice(contents.Length);
        device.Write(7 * 1024 * 1024, new byte[4096].Select(_ => (byte)0x5a).ToArray(), false);
        await using var host = new TcpNbdHost(Catalog(device));

        // Several connections at once (nbdcopy uses multi-conn when the server advertises it).
        (await ProcessRunner.RunAsync("nbdcopy", "--connections=4", "--flush", file, host.Url("vol"))).AssertSuccess();

        Assert.Equal(SHA256.HashData(contents), Hash(device));
    }

    [Theory]
    [InlineData(1024 * 1024)]
    [InlineData(4096)] // one page: every 4 MiB request is a thousand pieces
    public async Task NbdCopy_LargeRequestsInPieces_DeviceHoldsFileContents(int pieceBytes)
    {
        var contents = new byte[24 * 1024 * 1024];
        new Random(5).NextBytes(contents);
        var file = Path.Combine(_directory, "spliced.img");
        await File.WriteAllBytesAsync(file, contents);
        var device = new MemoryBlockDevice(contents.Length, logicalBlockSizeBytes: 4096);
        await using var host = new TcpNbdHost(Catalog(device), new NbdServerOptions { WriteChunkBytes = pieceBytes });

        // 4 MiB requests span many receive buffers and go to the device in pieces.
        (await ProcessRunner.RunAsync("nbdcopy", "--connections=2", "--request-size=4194304", "--flush", file, host.Url("vol"))).AssertSuccess();

        Assert.Equal(SHA256.HashData(contents), Hash(device));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task QemuIo_LargeWritesAtOddOffsets_WorkerOrInline_ReadBackIntact(bool writeBehind)
    {
        var device = new MemoryBlockDevice(32 * 1024 * 1024);
        var options = writeBehind ? new NbdServerOptions { WriteChunkBytes = 1 << 20 } : new NbdServerOptions { WriteBehindBytes = 0, WriteChunkBytes = 1 << 20 };
        await using var host = new TcpNbdHost(Catalog(device), options);

        // 4 KiB-aligned and 512-byte-aligned writes in 1 MiB pieces, and a FUA write in pieces, each
        // followed by reads of it and of its neighbours.
        var result = (await ProcessRunner.RunAsync(
            "qemu-io", "-f", "raw",
            "-c", "write -P 0x11 4096 4M",
            "-c", "write -P 0x22 9437696 3M",
            "-c", "write -f -P 0x33 16M 2M",
            "-c", "read -P 0 0 4096",
            "-c", "read -P 0x11 4096 4M",
            "-c", "read -P 0 4198400 512",
            "-c", "read -P 0x22 9437696 3M",
            "-c", "read -P 0x33 16M 2M",
            host.Url("vol"))).AssertSuccess();
        output.WriteLine(result.StandardOutput);

        Assert.DoesNotContain("fail", result.StandardOutput + result.StandardError, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Pattern verification", result.StandardOutput + result.StandardError, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task QemuImg_Info_ReportsVirtualSize()
    {
        var device = new MemoryBlockDevice(64 * 1024 * 1024);
        await using var host = new TcpNbdHost(Catalog(device));

        await Fio.RandomWritesWithVerifyAsync(host.Url("vol"), queueDepth: 16, sizeBytes: 16 * 1024 * 1024, TimeSpan.FromSeconds(90));
    }

    internal static NbdExportCatalog Catalog(IBlockDevice device)
    {
        var catalog = new NbdExportCatalog { DefaultExportName = "vol" };
        catalog.Set(new NbdExport("vol", device, "interop"));
        return catalog;
    }

    private static byte[] Hash(IBlockDevice device)
    {
        var contents = new byte[device.SizeBytes];
        device.Read(0, contents);
        return SHA256.HashData(contents);
    }
}
