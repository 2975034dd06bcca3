using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Mirror-and-ship between two real servers: export to files with the CLI, import at the other site, compare by hash over NBD.</summary>
public sealed class StreamCliTests : IAsyncLifetime
{
    private TwoServers _sites = null!;

    private ServerProcess Primary => _sites.Primary;

    private ServerProcess Dr => _sites.Dr;

    public async Task InitializeAsync() => _sites = await TwoServers.StartAsync();

    public async Task DisposeAsync() => await _sites.DisposeAsync();

    [Fact]
    public async Task FullAndIncrementalFiles_RecreateSnapshotsAtTheOtherSite_AndDamagedFilesAreRefused()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        await primary.CreateVolumeAsync(new CreateVolumeRequest("mail", 64 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x61 0 8M", "-c", "write -P 0x62 40M 4M", live.Url!)).AssertSuccess();
        await primary.CreateSnapshotAsync("mail", "monday");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x63 4M 1M", "-c", "write -z 40M 1M", live.Url!)).AssertSuccess();
        await primary.CreateSnapshotAsync("mail", "tuesday");
        var full = _sites.Temp.Combine("monday.tmstream");
        var delta = _sites.Temp.Combine("tuesday.tmstream");

        (await CliProcess.RunAsync("snapshot", "export", "mail@monday", full, "--data", Primary.DataDirectory)).AssertSuccess();
        (await CliProcess.RunAsync("snapshot", "export", "mail@tuesday", delta, "--from", "mail@monday", "--data", Primary.DataDirectory)).AssertSuccess();
        var damaged = _sites.Temp.Combine("damaged.tmstream");
        var bytes = await File.ReadAllBytesAsync(delta);
        bytes[bytes.Length / 2] ^= 1;
        await File.WriteAllBytesAsync(damaged, bytes);
        (await CliProcess.RunAsync("snapshot", "import", full, "--data", Dr.DataDirectory)).AssertSuccess();
        var refused = await CliProcess.RunAsync("snapshot", "import", damaged, "--data", Dr.DataDirectory);
        var afterRefusal = await dr.ListSnapshotsAsync("mail");
        var imported = (await CliProcess.RunAsync("snapshot", "import", delta, "--data", Dr.DataDirectory)).AssertSuccess().StandardOutput;

        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("damaged", refused.StandardError, StringComparison.Ordinal);
        Assert.Equal(["monday"], afterRefusal.Select(s => s.Name));
        Assert.Contains("incremental", imported, StringComparison.Ordinal);
        foreach (var snapshot in new[] { "mail@monday", "mail@tuesday" })
        {
            Assert.Equal(await _sites.HashSnapshotAsync(Primary, snapshot), await _sites.HashSnapshotAsync(Dr, snapshot));
            Assert.Equal((await primary.GetSnapshotAsync(snapshot)).Id, (await dr.GetSnapshotAsync(snapshot)).Id);
        }
    }
}
