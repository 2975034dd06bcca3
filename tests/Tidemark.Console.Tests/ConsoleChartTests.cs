using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Playwright;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;
using Tidemark.Server.WebConsole;
using static Microsoft.Playwright.Assertions;

namespace Tidemark.Console.Tests;

/// <summary>The volume page's I/O chart and the Replication page's lag chart, drawn from the server's sampled histories after real I/O and a real sync.</summary>
public sealed class ConsoleChartTests : IClassFixture<ConsoleFixture>
{
    private const long MiB = 1L << 20;

    private readonly ConsoleFixture _fixture;

    public ConsoleChartTests(ConsoleFixture fixture) => _fixture = fixture;

    private HttpClient Bearer()
    {
        var http = new HttpClient { BaseAddress = _fixture.Server.Http };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _fixture.Server.Token);
        return http;
    }

    [Fact]
    public async Task The_volume_page_charts_the_io_its_export_served()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("busy", 64 * MiB));
        var export = await api.CreateExportAsync(new CreateExportRequest("busy", "busy", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -P 0x5a 0 {16 * MiB}", "-c", $"read -P 0x5a 0 {8 * MiB}", export.Url!)).AssertSuccess();

        // The history samples every 5 s: wait for the sample that saw the writes.
        using var http = Bearer();
        ConsoleIoHistoryDto? io = null;
        for (var i = 0; i < 60 && io?.Samples.Any(s => s.WritesPerSecond > 0) != true; i++)
        {
            await Task.Delay(500);
            io = await http.GetFromJsonAsync<ConsoleIoHistoryDto>("/api/v1/console/volumes/busy/io", ApiJson.Options);
        }

        var moved = Assert.Single(io!.Samples, s => s.WritesPerSecond > 0);
        Assert.True(moved.WriteBytesPerSecond * IoHistory.SampleInterval.TotalSeconds >= 15 * MiB, $"{moved.WriteBytesPerSecond} B/s over one sample");
        Assert.True(moved.ReadBytesPerSecond > 0);

        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("ivan", TokenRoles.Auditor));
        await page.GotoAsync("/#/volumes/busy");
        var chart = page.Locator("#io-chart");
        await Expect(chart.Locator("canvas")).ToBeVisibleAsync();
        await Expect(chart).ToHaveAttributeAsync("data-active", "1");
        await Expect(chart).ToContainTextAsync("Peaks:");
        await Expect(chart).ToContainTextAsync("Writes/s");
        await ConsoleBrowser.ScreenshotAsync(page, "volume-io-chart");

        // A volume that does not exist has no chart rather than an empty one.
        using var missing = await http.GetAsync("/api/v1/console/volumes/nosuch/io");
        Assert.Equal(System.Net.HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task The_replication_page_charts_each_replicas_lag()
    {
        using var drDirectory = new TempDirectory();
        await using var dr = await ServerProcess.StartAsync(drDirectory.Path);
        using var home = _fixture.Admin();
        using var drApi = dr.Client();
        var homeId = await home.GetIdentityAsync();
        var drId = await drApi.GetIdentityAsync();
        await home.AddPartnerAsync(new AddPartnerRequest("dr", drId.ReplicationAddress!, drId.Fingerprint));
        await drApi.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint));
        await home.CreateVolumeAsync(new CreateVolumeRequest("charted", 8 * MiB));
        await home.CreateReplicaAsync(new CreateReplicaRequest("charted", "dr"));
        await home.SyncReplicaAsync("charted");

        // Sampled every 10 s: two samples of the synced replica make a line.
        using var http = Bearer();
        ConsoleLagHistoryDto? lag = null;
        for (var i = 0; i < 90 && lag?.Replicas.FirstOrDefault(r => r.Volume == "charted")?.LagSeconds.Count(l => l > 0) is not >= 2; i++)
        {
            await Task.Delay(500);
            lag = await http.GetFromJsonAsync<ConsoleLagHistoryDto>("/api/v1/console/replication-lag", ApiJson.Options);
        }

        var series = Assert.Single(lag!.Replicas, r => r.Volume == "charted");
        Assert.Equal(lag.Times.Count, series.LagSeconds.Count);

        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("lena", TokenRoles.Auditor));
        await page.GotoAsync("/#/replication");
        var chart = page.Locator("#lag-chart");
        await Expect(chart.Locator("canvas")).ToBeVisibleAsync();
        await Expect(chart).ToHaveAttributeAsync("data-replicas", new System.Text.RegularExpressions.Regex("(^|,)charted(,|$)"));
        await Expect(chart).ToContainTextAsync("charted (s)");
        await ConsoleBrowser.ScreenshotAsync(page, "replication-lag-chart");
    }
}
