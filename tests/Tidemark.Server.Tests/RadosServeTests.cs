using System.Security.Cryptography;
using System.Text.Json;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// `tidemark serve` with its pool on a one-node Ceph cluster (one per class): real NBD clients
/// (nbdcopy, nbdinfo) and libiscsi's suite (iscsi-test-cu, read and write families) through a
/// RADOS-backed volume, the CLI's `pool add-store rados:...`, and a second server refused while the
/// first holds the store.
/// </summary>
public sealed class RadosServeTests(CephCluster cluster) : IClassFixture<CephCluster>, IDisposable
{
    private const int VolumeBytes = 32 << 20;
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task NbdCopy_ThroughRadosBackedVolume_ReadsBackWhatWasWrittenAfterKill9()
    {
        var data = _temp.Combine("data");
        var store = cluster.Location();
        var image = _temp.Combine("in.img");
        var bytes = new byte[VolumeBytes];
        new Random(22).NextBytes(bytes.AsSpan(0, VolumeBytes / 2)); // the second half stays zero
        await File.WriteAllBytesAsync(image, bytes);

        await using (var server = await ServerProcess.StartAsync(data, "--store-path", store, "--store-capacity", "256M"))
        {
            using var client = server.Client();
            var pool = await client.GetPoolAsync();
            Assert.Equal("rados", pool.Stores[0].Kind);
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", VolumeBytes));
            var export = await client.CreateExportAsync(new CreateExportRequest("db"));
            (await ProcessRunner.RunAsync("nbdcopy", "--flush", image, export.Url!)).AssertSuccess();
            var info = (await ProcessRunner.RunAsync("nbdinfo", "--json", export.Url!)).AssertSuccess();
            using var doc = JsonDocument.Parse(info.StandardOutput);
            Assert.Equal(VolumeBytes, doc.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64());

            // A second server with its own data directory naming the same RADOS store is refused.
            var second = await CliProcess.RunAsync("serve", "--data", _temp.Combine("second"), "--http", "127.0.0.1:0", "--nbd", "127.0.0.1:0", "--iscsi", "off", "--replication", "off", "--store-path", store, "--store-capacity", "256M");
            Assert.NotEqual(0, second.ExitCode);
            Assert.Contains("in use by another Tidemark server", second.StandardError + second.StandardOutput, StringComparison.Ordinal);

            await server.KillAsync(); // kill -9: the flushed copy must be there after the restart
        }

        await using (var server = await ServerProcess.StartAsync(data))
        {
            using var client = server.Client();
            var export = (await client.ListExportsAsync()).Single(e => e.Target == "db");
            var copy = _temp.Combine("out.img");
            (await ProcessRunner.RunAsync("nbdcopy", export.Url!, copy)).AssertSuccess();
            Assert.Equal(SHA256.HashData(bytes), SHA256.HashData(await File.ReadAllBytesAsync(copy)));
        }
    }

    [Theory]
    [InlineData(false, 4096)]
    [InlineData(true, 4096)]
    [InlineData(false, 1 << 20)]
    [InlineData(true, 1 << 20)]
    public async Task NbdCopy_OneConnection32Requests_ThroughRadosBackedVolume_ReadsBackWhatWasWritten(bool tls, int requestBytes)
    {
        // Issue 22: the volume prefers concurrent reads, so one connection has many READs in flight
        // and their replies may come back out of order (under TLS through the decrypted pipe);
        // nbdcopy matches them by cookie. 1 MiB READs on the plain transport are read into blocks
        // the output lends and sent from them (ADR 0021, session 21).
        const int Size = 8 << 20;
        var data = _temp.Combine("data");
        string[] arguments = ["--store-path", cluster.Location(), "--store-capacity", "256M", .. (tls ? new[] { "--tls-cert", "self-signed" } : Array.Empty<string>())];
        await using var server = await ServerProcess.StartAsync(data, arguments);
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("par", Size));
        var export = await client.CreateExportAsync(new CreateExportRequest("par", "par", "nbd", TlsRequired: tls));
        var url = export.Url!;
        if (tls)
        {
            var certificates = _temp.Combine("certs");
            Directory.CreateDirectory(certificates);
            File.Copy(Path.Combine(data, "tls", "cert.pem"), Path.Combine(certificates, "ca-cert.pem"));
            url += $"?tls-certificates={certificates}";
        }

        var bytes = new byte[Size];
        new Random(23).NextBytes(bytes);
        var image = _temp.Combine("par.img");
        await File.WriteAllBytesAsync(image, bytes);
        (await ProcessRunner.RunAsync("nbdcopy", "--flush", image, url)).AssertSuccess();

        var copy = _temp.Combine("par-out.img");
        (await ProcessRunner.RunAsync("nbdcopy", "--connections=1", "--requests=32", $"--request-size={requestBytes}", url, copy)).AssertSuccess();

        Assert.Equal(SHA256.HashData(bytes), SHA256.HashData(await File.ReadAllBytesAsync(copy)));
    }

    [Fact]
    public async Task Fio_RandomWritesThenVerifyAtQueueDepth32_ThroughRadosBackedVolume_ReportNoErrors()
    {
        // The verify pass reads at queue depth 32: every READ started without a thread waiting for
        // it, ended on librados's thread, answered by the connection's replier (ADR 0021).
        const int Size = 8 << 20;
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"), "--store-path", cluster.Location(), "--store-capacity", "256M");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("fio", Size));
        var export = await client.CreateExportAsync(new CreateExportRequest("fio", "fio", "nbd"));

        await Fio.RandomWritesWithVerifyAsync(export.Url!, queueDepth: 32, Size, TimeSpan.FromSeconds(120));
    }

    [Fact]
    public async Task IscsiTestCu_ReadAndWriteFamiliesOnRadosBackedVolume_NoFailures()
    {
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"), "--store-path", cluster.Location(), "--store-capacity", "256M");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("cu", 64L << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest("cu", Protocol: "iscsi"));
        foreach (var family in new[] { "SCSI.Read10", "SCSI.Write10", "SCSI.Read16", "SCSI.Write16" })
        {
            var result = await ProcessRunner.RunAsync(TimeSpan.FromSeconds(300), "iscsi-test-cu", "--dataloss", $"--test={family}", export.Url!, export.Url!);

            // CUnit's run summary: "tests  Total  Ran  Passed  Failed  Inactive".
            var output = result.StandardOutput + result.StandardError;
            var summary = IscsiDataTests.SummaryRegex().Match(result.StandardOutput);
            Assert.True(summary.Success, output);
            Assert.True(int.Parse(summary.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) > 0, output);
            Assert.True(summary.Groups[4].Value == "0", output);
            Assert.True(result.ExitCode == 0, output);
        }

        Assert.True((await client.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task Cli_AddStoreRados_ThenSecondAddOfSameStoreRefused()
    {
        var data = _temp.Combine("data");
        await using var server = await ServerProcess.StartAsync(data);
        var prefix = "cli" + Guid.NewGuid().ToString("N")[..8];
        var added = await CliProcess.RunAsync("pool", "add-store", $"rados:{CephCluster.PoolName}/{prefix}", "--ceph-conf", cluster.ConfPath, "--id", "admin", "--data", data, "--json");
        added.AssertSuccess();
        using var doc = JsonDocument.Parse(added.StandardOutput);
        var stores = doc.RootElement.GetProperty("stores");
        Assert.Equal(2, stores.GetArrayLength());
        Assert.Equal("rados", stores[1].GetProperty("kind").GetString());
        Assert.StartsWith($"rados:{CephCluster.PoolName}/{prefix}?conf={cluster.ConfPath}", stores[1].GetProperty("path").GetString(), StringComparison.Ordinal);

        var again = await CliProcess.RunAsync("pool", "add-store", $"rados:{CephCluster.PoolName}/{prefix}", "--ceph-conf", cluster.ConfPath, "--data", data);
        Assert.Equal(1, again.ExitCode);

        var fileWithoutCapacity = await CliProcess.RunAsync("pool", "add-store", "extra.dat", "--data", data);
        Assert.Equal(2, fileWithoutCapacity.ExitCode);
        Assert.Contains("--capacity is required", fileWithoutCapacity.StandardError, StringComparison.Ordinal);

        var cephOptionOnFile = await CliProcess.RunAsync("pool", "add-store", "extra.dat", "--capacity", "1G", "--ceph-conf", cluster.ConfPath, "--data", data);
        Assert.Equal(2, cephOptionOnFile.ExitCode);
    }
}
