using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Changed-block tracking over plain NBD (tidemark:changed:BASE), read by nbdinfo from a real server.</summary>
public sealed class ChangedBlocksTests : ServerTest
{
    [Fact]
    public async Task SnapshotExport_ReportsExactlyTheBlocksChangedSinceAnOlderSnapshot_AndSurvivesRestart()
    {
        using (var client = Server.Client())
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
            var live = await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
            (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 1 0 1M", "-c", "write -P 2 8M 1M", live.Url!)).AssertSuccess();
            await client.CreateSnapshotAsync("mail", "monday");
            (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 3 4M 64k", "-c", "write -P 4 12M 4k", live.Url!)).AssertSuccess();
            await client.CreateSnapshotAsync("mail", "tuesday");
            await client.CreateExportAsync(new CreateExportRequest("mail@tuesday", "tuesday", "nbd"));
        }

        await Server.KillAsync();
        await Server.DisposeAsync();
        Server = await ServerProcess.StartAsync(Data);
        var url = Server.NbdUrl("tuesday").ToString();

        var map = (await ProcessRunner.RunAsync("nbdinfo", "--map=tidemark:changed:monday", url)).AssertSuccess().StandardOutput;
        var info = (await ProcessRunner.RunAsync("nbdinfo", url)).AssertSuccess().StandardOutput;
        var unknown = await ProcessRunner.RunAsync("nbdinfo", "--map=tidemark:changed:friday", url);
        var liveMap = (await ProcessRunner.RunAsync("nbdinfo", "--map=tidemark:changed:tuesday", Server.NbdUrl("mail").ToString())).AssertSuccess().StandardOutput;

        var changed = Extents(map).Where(e => e.Type == 1).Select(e => (e.Offset, e.Length)).ToList();
        Assert.Equal([(4L << 20, 65536L), (12L << 20, 4096L)], changed);
        Assert.Equal(16L << 20, Extents(map).Sum(e => e.Length));
        Assert.Contains("tidemark:changed:monday", info, StringComparison.Ordinal);
        Assert.DoesNotContain("tidemark:changed:tuesday", info, StringComparison.Ordinal); // not older than the export itself
        Assert.NotEqual(0, unknown.ExitCode);
        Assert.DoesNotContain(Extents(liveMap), e => e.Type == 1); // the live volume has not changed since tuesday
    }

    private static List<(long Offset, long Length, int Type)> Extents(string map) =>
        [.. map.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' ', '\t').Where(p => p.Length > 0).ToArray())
            .Select(p => (long.Parse(p[0], System.Globalization.CultureInfo.InvariantCulture), long.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture), int.Parse(p[2], System.Globalization.CultureInfo.InvariantCulture)))];
}
