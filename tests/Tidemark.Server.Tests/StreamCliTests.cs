using System.Security.Cryptography;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Mirror-and-ship between two real servers: export to files with the CLI, import at the other site, compare by hash over NBD.</summary>
public sealed class StreamCliTests : IAsyncLifetime
{
    private readonly TempDirectory _temp = new();
    private ServerProcess _primary = null!;
    private ServerProcess _dr = null!;

    public async Task InitializeAsync()
    {
        _primary = await ServerProcess.StartAsync(_temp.Combine("primary"));
        _dr = await ServerProcess.StartAsync(_temp.Combine("dr"));
    }

    public async Task DisposeAsync()
    {
        await _primary.DisposeAsync();
        await _dr.DisposeAsync();
        _temp.Dispose();
    }

    [Fact]
    public async Task FullAndIncrementalFiles_RecreateSnapshotsAtTheOtherSite_AndDamagedFilesAreRefused()
    {
        using var primary = _primary.Client();
        using var dr = _dr.Client();
        await primary.CreateVolumeAsync(new CreateVolumeRequest("mail", 64 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 8M", "-c", "write -P 0x62 40M 4M", live.Url!)).AssertSuccess();
        await primary.CreateSnapshotAsync("mail", "monday");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x63 4M 1M", "-c", "write -z 40M 1M", live.Url!)).AssertSuccess();
        await primary.CreateSnapshotAsync("mail", "tuesday");
        var full = _temp.Combine("monday.tmstream");
        var delta = _temp.Combine("tuesday.tmstream");

        (await CliProcess.RunAsync("snapshot", "export", "mail@monday", full, "--data", _primary.DataDirectory)).AssertSuccess();
        (await CliProcess.RunAsync("snapshot", "export", "mail@tuesday", delta, "--from", "mail@monday", "--data", _primary.DataDirectory)).AssertSuccess();
        var damaged = _temp.Combine("damaged.tmstream");
        var bytes = await File.ReadAllBytesAsync(delta);
        bytes[bytes.Length / 2] ^= 1;
        await File.WriteAllBytesAsync(damaged, bytes);
        (await CliProcess.RunAsync("snapshot", "import", full, "--data", _dr.DataDirectory)).AssertSuccess();
        var refused = await CliProcess.RunAsync("snapshot", "import", damaged, "--data", _dr.DataDirectory);
        var afterRefusal = await dr.ListSnapshotsAsync("mail");
        var imported = (await CliProcess.RunAsync("snapshot", "import", delta, "--data", _dr.DataDirectory)).AssertSuccess().StandardOutput;

        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("damaged", refused.StandardError, StringComparison.Ordinal);
        Assert.Equal(["monday"], afterRefusal.Select(s => s.Name));
        Assert.Contains("incremental", imported, StringComparison.Ordinal);
        foreach (var snapshot in new[] { "mail@monday", "mail@tuesday" })
        {
            Assert.Equal(await HashAsync(_primary, primary, snapshot), await HashAsync(_dr, dr, snapshot));
            Assert.Equal((await primary.GetSnapshotAsync(snapshot)).Id, (await dr.GetSnapshotAsync(snapshot)).Id);
        }
    }

    private async Task<string> HashAsync(ServerProcess server, TidemarkClient client, string snapshot)
    {
        var name = $"h-{snapshot.Replace('@', '-')}";
        var export = await client.CreateExportAsync(new CreateExportRequest(snapshot, name, "nbd"));
        var file = _temp.Combine($"{server.Pid}-{name}.raw");
        (await ProcessRunner.RunAsync("nbdcopy", export.Url!, file)).AssertSuccess();
        await client.DeleteExportAsync(name);
        await using var stream = File.OpenRead(file);
        return Convert.ToHexString(await SHA256.HashDataAsync(stream));
    }
}
