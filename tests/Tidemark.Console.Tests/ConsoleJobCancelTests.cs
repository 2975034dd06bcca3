using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Microsoft.Playwright;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace Tidemark.Console.Tests;

/// <summary>
/// Cancelling jobs from the browser: from the live progress of a sync the console started, and from
/// the jobs page. A replica sync of random data limited to 1 MiB/s to a second real server stays in
/// flight for half a minute, which is long enough to click; the job ends <c>cancelled</c>.
/// </summary>
public sealed class ConsoleJobCancelTests : IClassFixture<ConsoleFixture>
{
    private const int DataBytes = 32 << 20;

    private readonly ConsoleFixture _fixture;

    public ConsoleJobCancelTests(ConsoleFixture fixture) => _fixture = fixture;

    [Fact]
    public async Task A_running_sync_is_cancelled_from_its_live_progress_and_from_the_jobs_page_after_a_confirmation()
    {
        using var drDirectory = new TempDirectory();
        using var scratch = new TempDirectory();
        await using var dr = await ServerProcess.StartAsync(drDirectory.Path);
        using var home = _fixture.Admin();
        using var drApi = dr.Client();
        var homeId = await home.GetIdentityAsync();
        var drId = await drApi.GetIdentityAsync();
        await home.AddPartnerAsync(new AddPartnerRequest("dr", drId.ReplicationAddress!, drId.Fingerprint));
        await drApi.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint));

        // Random data does not compress, so the 1 MiB/s limit holds the sync for about 30 s.
        await home.CreateVolumeAsync(new CreateVolumeRequest("slow", 64 << 20));
        var export = await home.CreateExportAsync(new CreateExportRequest("slow", "slow", "nbd"));
        var file = Path.Combine(scratch.Path, "random.bin");
        await File.WriteAllBytesAsync(file, RandomNumberGenerator.GetBytes(DataBytes));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -s {file} 0 {DataBytes}", export.Url!)).AssertSuccess();
        await home.CreateReplicaAsync(new CreateReplicaRequest("slow", "dr", Bandwidth: "1M"));

        // 1. The replication page's "Sync now" follows its job; the Cancel beside the bar asks first.
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("carla", TokenRoles.Operator));
        await page.GotoAsync("/#/replication");
        await page.Locator("tr[data-replica='slow']").GetByRole(AriaRole.Button, new() { Name = "Sync slow now" }).ClickAsync();
        var cancel = page.GetByRole(AriaRole.Status).GetByRole(AriaRole.Button, new() { NameRegex = new("^Cancel job ") });
        await cancel.ClickAsync();
        var dialog = page.GetByRole(AriaRole.Dialog);
        await Expect(dialog).ToContainTextAsync("replica.sync slow stops at its next safe point");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel", Exact = true }).ClickAsync(); // changed my mind: nothing happens
        var first = Assert.Single(await home.ListJobsAsync(), j => j.Kind == "replica.sync");
        Assert.Equal("running", first.State);
        await cancel.ClickAsync();
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Cancel job" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Sync of slow cancelled after", new() { Timeout = 30_000 });
        Assert.Equal("cancelled", (await home.GetJobAsync(first.Id)).State);
        await ConsoleBrowser.ScreenshotAsync(page, "sync-cancelled");

        // 2. The jobs page: a sync started elsewhere is cancelled there, and its row turns cancelled live.
        await page.GotoAsync("/#/jobs");
        await Expect(page.Locator("#live")).ToHaveTextAsync("live");
        using var http = new HttpClient { BaseAddress = _fixture.Server.Http };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _fixture.Server.Token);
        using var started = await http.PostAsync("/api/v1/replicas/slow/sync?wait=0", null);
        Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
        var second = (await started.Content.ReadFromJsonAsync<JobDto>(ApiJson.Options))!;
        var row = page.Locator($"tr[data-job='{second.Id}']");
        await row.GetByRole(AriaRole.Button, new() { Name = $"Cancel job {second.Id}" }).ClickAsync();
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Cancel job" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"Job {second.Id} (replica.sync slow) asked to stop");
        await Expect(row.Locator("td[data-state]")).ToHaveAttributeAsync("data-state", "cancelled", new() { Timeout = 30_000 });
        await Expect(row.GetByRole(AriaRole.Button)).ToHaveCountAsync(0);
        await ConsoleBrowser.ScreenshotAsync(page, "jobs-cancelled");
        Assert.Equal("cancelled", (await home.GetJobAsync(second.Id)).State);
        Assert.Equal(2, (await home.ListEventsAsync(kind: "job.cancel")).Count(e => e.Actor == "carla" && e.Outcome == "ok"));
    }
}
