using System.Security.Cryptography;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;

namespace Tidemark.Protocols.Nbd.Tests.Interop;

/// <summary>
/// Real clients against a device whose reads are slow and prefer concurrency (a stand-in for a
/// RADOS-backed volume): replies come back out of order, and libnbd and fio match them by cookie.
/// </summary>
[Collection(nameof(InteropCollection))]
public sealed class ParallelReadInteropTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("tidemark-nbdpar-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task NbdCopy_OneConnection32Requests_ReadsInFlightTogether_CopyMatches()
    {
        var device = new GatedReadDevice(8 * 1024 * 1024, preferredConcurrency: 32) { Delay = TimeSpan.FromMilliseconds(1) };
        var random = new Random(22);
        for (var i = 0; i < 32; i++)
        {
            var data = new byte[65536];
            random.NextBytes(data);
            device.Memory.Write(random.Next(0, 128) * 65536L, data, false);
        }

        await using var host = new TcpNbdHost(CopyAndQemuInteropTests.Catalog(device));
        var file = Path.Combine(_directory, "copy.img");

        (await ProcessRunner.RunAsync("nbdcopy", "--connections=1", "--requests=32", "--request-size=65536", host.Url("vol"), file)).AssertSuccess();

        var contents = new byte[device.SizeBytes];
        device.Memory.Read(0, contents);
        Assert.Equal(SHA256.HashData(contents), SHA256.HashData(await File.ReadAllBytesAsync(file)));
        Assert.True(device.PeakInFlight > 1, $"peak reads in flight {device.PeakInFlight}");
    }

    [Fact]
    public async Task Fio_RandomWritesThenVerifyAtQueueDepth32_ReportNoErrors()
    {
        var device = new GatedReadDevice(16 * 1024 * 1024, preferredConcurrency: 32) { Delay = TimeSpan.FromMilliseconds(1) };
        await using var host = new TcpNbdHost(CopyAndQemuInteropTests.Catalog(device));

        await Fio.RandomWritesWithVerifyAsync(host.Url("vol"), queueDepth: 32, sizeBytes: 4 * 1024 * 1024, TimeSpan.FromSeconds(90));
        Assert.True(device.PeakInFlight > 1, $"peak reads in flight {device.PeakInFlight}");
    }
}
