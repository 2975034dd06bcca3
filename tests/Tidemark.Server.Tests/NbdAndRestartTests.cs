using System.Security.Cryptography;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Data through real NBD clients (nbdcopy from libnbd-bin, qemu-io from qemu-utils) against a real
/// `tidemark serve` process, then what must survive a clean stop and a kill -9.
/// </summary>
public sealed class NbdAndRestartTests : IDisposable
{
    private const int VolumeBytes = 16 << 20;
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task SnapshotExport_AfterLiveOverwrite_ReadsPointInTimeImage()
    {
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"));
        using var client = server.Client();
        var original = await WriteRandomFileAsync("original.img", seed: 1);
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", VolumeBytes));
        var export = await client.CreateExportAsync(new CreateExportRequest("db"));
        (await ProcessRunner.RunAsync("nbdcopy", "--flush", original, export.Url!)).AssertSuccess();

        await client.CreateSnapshotAsync("db", "before");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", export.Url!)).AssertSuccess();
        var snapshotExport = await client.CreateExportAsync(new CreateExportRequest("db@before"));
        var snapshotCopy = _temp.Combine("snapshot.img");
        (await ProcessRunner.RunAsync("nbdcopy", snapshotExport.Url!, snapshotCopy)).AssertSuccess();
        var liveCopy = _temp.Combine("live.img");
        (await ProcessRunner.RunAsync("nbdcopy", export.Url!, liveCopy)).AssertSuccess();
        var writeToSnapshot = await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 4k", snapshotExport.Url!);

        Assert.True(snapshotExport.ReadOnly);
        Assert.Equal("online", snapshotExport.State);
        Assert.Equal(Hash(original), Hash(snapshotCopy));
        var live = await File.ReadAllBytesAsync(liveCopy);
        Assert.All(live.AsSpan(1 << 20, 64 << 10).ToArray(), b => Assert.Equal(0x5a, b));
        Assert.NotEqual(Hash(original), Hash(liveCopy));
        Assert.NotEqual(0, writeToSnapshot.ExitCode);
    }

    [Fact]
    public async Task ViewAndDiff_AfterOverwrite_ViewIsWritableAndDiffPagesChangedRanges()
    {
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"));
        using var client = server.Client();
        var original = await WriteRandomFileAsync("original.img", seed: 2);
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", VolumeBytes));
        var export = await client.CreateExportAsync(new CreateExportRequest("db"));
        (await ProcessRunner.RunAsync("nbdcopy", "--flush", original, export.Url!)).AssertSuccess();
        await client.CreateSnapshotAsync("db", "s1");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x01 0 4k", "-c", "write -P 0x02 8M 8k", "-c", "flush", export.Url!)).AssertSuccess();
        await client.CreateSnapshotAsync("db", "s2");

        var view = await client.CreateViewAsync("db@s1", "db-test");
        var viewExport = await client.CreateExportAsync(new CreateExportRequest("db-test"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x77 0 4k", viewExport.Url!)).AssertSuccess();
        var viewCopy = _temp.Combine("view.img");
        (await ProcessRunner.RunAsync("nbdcopy", viewExport.Url!, viewCopy)).AssertSuccess();
        var all = await client.DiffAsync("db", "s1", "s2");
        var first = await client.DiffAsync("db", "s1", "s2", offset: 0, limit: 1);
        var second = await client.DiffAsync("db", "db@s1", "db@s2", offset: first.NextOffset!.Value, limit: 1);
        var toLive = await client.DiffAsync("db", "s2");

        Assert.Equal(("view", "db@s1"), (view.Kind, view.Origin));
        var viewBytes = await File.ReadAllBytesAsync(viewCopy);
        var originalBytes = await File.ReadAllBytesAsync(original);
        Assert.All(viewBytes.AsSpan(0, 4096).ToArray(), b => Assert.Equal(0x77, b));
        Assert.True(viewBytes.AsSpan(4096).SequenceEqual(originalBytes.AsSpan(4096)));
        Assert.Equal([new ChangedRangeDto(0, 4096), new ChangedRangeDto(8 << 20, 8192)], all.Ranges);
        Assert.Equal((2, 12288L, (int?)null), (all.TotalRanges, all.TotalChangedBytes, all.NextOffset));
        Assert.Equal([new ChangedRangeDto(0, 4096)], first.Ranges);
        Assert.Equal([new ChangedRangeDto(8 << 20, 8192)], second.Ranges);
        Assert.Null(second.NextOffset);
        Assert.Empty(toLive.Ranges);
    }

    [Fact]
    public async Task Restart_AfterKill9_RestoresVolumesSnapshotsViewsAndExports()
    {
        var data = _temp.Combine("data");
        var original = await WriteRandomFileAsync("original.img", seed: 3);
        await using (var server = await ServerProcess.StartAsync(data))
        {
            using var client = server.Client();
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", VolumeBytes));
            var export = await client.CreateExportAsync(new CreateExportRequest("db"));
            (await ProcessRunner.RunAsync("nbdcopy", "--flush", original, export.Url!)).AssertSuccess();
            await client.CreateSnapshotAsync("db", "s1");
            await client.CreateViewAsync("db@s1", "db-view");
            await client.CreateExportAsync(new CreateExportRequest("db@s1", "snap"));
            await client.CreateExportAsync(new CreateExportRequest("db-view", ReadOnly: true));
            await server.KillAsync();
        }

        await using var restarted = await ServerProcess.StartAsync(data);
        using var after = restarted.Client();
        var volumes = await after.ListVolumesAsync();
        var exports = await after.ListExportsAsync();
        var copy = _temp.Combine("copy.img");
        (await ProcessRunner.RunAsync("nbdcopy", restarted.NbdUrl("snap").ToString(), copy)).AssertSuccess();
        var report = await after.VerifyAsync();

        Assert.Equal(["db", "db-view"], volumes.Select(v => v.Name));
        Assert.Equal(["s1"], (await after.ListSnapshotsAsync("db")).Select(s => s.Name));
        Assert.Equal(
            [("db", "db", false), ("db-view", "db-view", true), ("snap", "db@s1", true)],
            exports.Select(e => (e.Name, e.Target, e.ReadOnly)));
        Assert.All(exports, e => Assert.Equal("online", e.State));
        Assert.Equal(Hash(original), Hash(copy));
        Assert.True(report.Clean, string.Join("; ", report.Problems));
    }

    [Fact]
    public async Task UnixSocket_CopyInAndOut_SameDataOwnerOnlyAndRemovedOnStop()
    {
        var data = _temp.Combine("data");
        var socket = Path.Combine(data, "nbd.sock");
        var original = await WriteRandomFileAsync("original.img", seed: 4);
        await using (var server = await ServerProcess.StartAsync(data, "--nbd-socket", "nbd.sock"))
        {
            using var client = server.Client();
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", VolumeBytes));
            var export = await client.CreateExportAsync(new CreateExportRequest("db"));
            (await ProcessRunner.RunAsync("nbdcopy", "--flush", original, export.LocalUrl!)).AssertSuccess();
            var overTcp = _temp.Combine("tcp.img");
            (await ProcessRunner.RunAsync("nbdcopy", export.Url!, overTcp)).AssertSuccess();

            Assert.Equal($"nbd+unix:///db?socket={socket}", export.LocalUrl);
            Assert.Equal(Hash(original), Hash(overTcp));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));
            Assert.Contains("\"nbdSocket\"", await File.ReadAllTextAsync(Path.Combine(data, "server.json")), StringComparison.Ordinal);

            // A second server may not take over a socket another one answers on.
            var second = await ProcessRunner.RunAsync("dotnet", CliProcess.DllPath, "serve", "--data", _temp.Combine("other"), "--http", "127.0.0.1:0", "--nbd", "127.0.0.1:0", "--iscsi", "off", "--replication", "off", "--store-capacity", "64M", "--nbd-socket", socket);
            Assert.NotEqual(0, second.ExitCode);
            Assert.Contains("another server answers there", second.StandardError, StringComparison.Ordinal);
            Assert.Equal(0, await server.StopAsync());
        }

        Assert.False(File.Exists(socket));

        // After kill -9 the socket file stays behind; the next start replaces it.
        await using (var server = await ServerProcess.StartAsync(data, "--nbd-socket", "nbd.sock"))
        {
            await server.KillAsync();
        }

        Assert.True(File.Exists(socket));
        await using var restarted = await ServerProcess.StartAsync(data, "--nbd-socket", "nbd.sock");
        var copy = _temp.Combine("copy.img");
        (await ProcessRunner.RunAsync("nbdcopy", $"nbd+unix:///db?socket={socket}", copy)).AssertSuccess();
        Assert.Equal(Hash(original), Hash(copy));
    }

    [Fact]
    public async Task Stop_Sigterm_ExitsZeroAndRestartsWithSameToken()
    {
        var data = _temp.Combine("data");
        string token;
        await using (var server = await ServerProcess.StartAsync(data))
        {
            token = server.Token;
            using var client = server.Client();
            await client.CreateVolumeAsync(new CreateVolumeRequest("keep", 8 << 20));

            var exitCode = await server.StopAsync();

            Assert.Equal(0, exitCode);
            Assert.Contains("pool is flushed and closed", server.Log, StringComparison.Ordinal);
        }

        Assert.False(File.Exists(Path.Combine(data, "server.json")));
        Assert.False(File.Exists(Path.Combine(data, "lock")));
        await using var restarted = await ServerProcess.StartAsync(data);
        using var again = restarted.Client();
        Assert.Equal(token, restarted.Token);
        Assert.Equal(["keep"], (await again.ListVolumesAsync()).Select(v => v.Name));
    }

    [Fact]
    public async Task FirstStart_EmptyDirectory_CreatesPrivateTokenAndCompleteConfig()
    {
        var data = _temp.Combine("data");

        await using var server = await ServerProcess.StartAsync(data, "--map-cache", "16M");

        var mode = File.GetUnixFileMode(Path.Combine(data, "token"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode);
        Assert.Equal(64, server.Token.Length);
        var config = ServerSettings.Load(Path.Combine(data, "tidemark.json"));
        Assert.Equal(("127.0.0.1:0", "127.0.0.1:0", "1G", "16M", "24M"), (config.Http, config.Nbd, config.StoreCapacity, config.MapCache, config.MetadataCache));
        Assert.True(Directory.Exists(Path.Combine(data, "pool")));
    }

    private async Task<string> WriteRandomFileAsync(string name, int seed)
    {
        var bytes = new byte[VolumeBytes];
        new Random(seed).NextBytes(bytes.AsSpan(0, 6 << 20));
        new Random(seed + 100).NextBytes(bytes.AsSpan(9 << 20, 1 << 20));
        var path = _temp.Combine(name);
        await File.WriteAllBytesAsync(path, bytes);
        return path;
    }

    private static byte[] Hash(string path) => SHA256.HashData(File.ReadAllBytes(path));
}
