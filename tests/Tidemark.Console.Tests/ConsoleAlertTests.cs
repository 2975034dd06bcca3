using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Playwright;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace Tidemark.Console.Tests;

/// <summary>
/// Alerts made real against real servers and watched on the dashboard as they appear and clear
/// (a small pool filled, a replica left behind its RPO, a sync stalled by a stopped partner, a
/// policy whose volume went away), and the alert thresholds through the API, the CLI and the console.
/// </summary>
public sealed class ConsoleAlertTests : IClassFixture<ConsoleFixture>
{
    private const long MiB = 1L << 20;

    private readonly ConsoleFixture _fixture;

    public ConsoleAlertTests(ConsoleFixture fixture) => _fixture = fixture;

    private static ILocator Alert(IPage page, string kind, string subject) =>
        page.Locator($"#alerts li[data-kind='{kind}']").Filter(new() { HasText = subject });

    [Fact]
    public async Task A_filled_small_pool_raises_the_alert_the_thresholds_form_moves_it_and_freeing_space_clears_it()
    {
        using var directory = new TempDirectory();
        await using var small = await ServerProcess.StartAsync(directory.Path, "--store-capacity", "64M");
        using var api = small.Client();
        await api.CreateVolumeAsync(new CreateVolumeRequest("filler", 128 * MiB));
        var export = await api.CreateExportAsync(new CreateExportRequest("filler", "filler", "nbd"));
        var page = await _fixture.SignInAsync(small.Token, small.Http);
        await Expect(page.Locator("#live")).ToHaveTextAsync("live");
        await Expect(page.Locator("#alerts li[data-kind='pool-full']")).ToHaveCountAsync(0);
        await Expect(page.Locator("#thresholds")).ToContainTextAsync("pool 85% full");
        await Expect(page.Locator("#thresholds")).ToContainTextAsync("From the config file.");

        // 58 of 64 MiB: over the default 85%.
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -P 0xab 0 {58 * MiB}", export.Url!)).AssertSuccess();
        var full = page.Locator("#alerts li[data-kind='pool-full']");
        await Expect(full).ToContainTextAsync("its alert is at 85%");
        await ConsoleBrowser.ScreenshotAsync(page, "alert-pool-full");

        // The console's form: 150 % is refused with the range named; 95 % moves the alert away.
        await page.GetByRole(AriaRole.Button, new() { Name = "Change thresholds" }).ClickAsync();
        var dialog = page.GetByRole(AriaRole.Dialog, new() { Name = "Alert thresholds" });
        await dialog.GetByLabel("Pool nearly full at").FillAsync("150");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("poolFullPercent must be between 1 and 100");
        Assert.Equal(("config", 85.0), await ThresholdsAsync(api));
        await page.GetByRole(AriaRole.Button, new() { Name = "Change thresholds" }).ClickAsync();
        await dialog.GetByLabel("Pool nearly full at").FillAsync("95");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Alert thresholds saved.");
        await Expect(full).ToHaveCountAsync(0);
        await Expect(page.Locator("#thresholds")).ToContainTextAsync("pool 95% full");
        Assert.Equal(("api", 95.0), await ThresholdsAsync(api));
        Assert.Contains(await api.ListEventsAsync(kind: "alerts.thresholds"), e => e.Outcome == "ok");

        // Back at 85 % the alert returns; freeing the space (deleting the volume) clears it.
        await api.SetAlertThresholdsAsync(new UpdateAlertThresholdsRequest(PoolFullPercent: 85));
        await Expect(full).ToBeVisibleAsync();
        await api.DeleteExportAsync("filler");
        await api.DeleteVolumeAsync("filler");
        await Expect(full).ToHaveCountAsync(0, new() { Timeout = 30_000 });
    }

    [Fact]
    public async Task A_replica_behind_its_rpo_and_a_sync_stalled_by_a_stopped_partner_appear_and_clear()
    {
        using var home = _fixture.Admin();
        await home.SetAlertThresholdsAsync(new UpdateAlertThresholdsRequest(StalledJob: "2s", Rpo: "8s"));
        using var drDirectory = new TempDirectory();
        ServerProcess? dr = await ServerProcess.StartAsync(drDirectory.Path);
        try
        {
            using (var drApi = dr.Client())
            {
                var homeId = await home.GetIdentityAsync();
                var drId = await drApi.GetIdentityAsync();
                await home.AddPartnerAsync(new AddPartnerRequest("dr", drId.ReplicationAddress!, drId.Fingerprint));
                await drApi.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint));
            }

            await home.CreateVolumeAsync(new CreateVolumeRequest("lagging", 8 * MiB));
            await home.CreateReplicaAsync(new CreateReplicaRequest("lagging", "dr"));
            await home.SyncReplicaAsync("lagging");
            var page = await _fixture.SignInAsync(await _fixture.TokenAsync("rosa", TokenRoles.Auditor));

            // No sync for longer than the 8 s RPO: the alert comes by itself; a sync clears it.
            var behind = Alert(page, "replica-behind-rpo", "lagging");
            await Expect(behind).ToContainTextAsync("over its RPO of 8 s", new() { Timeout = 30_000 });
            await ConsoleBrowser.ScreenshotAsync(page, "alert-replica-behind-rpo");
            await home.SyncReplicaAsync("lagging");
            await Expect(behind).ToHaveCountAsync(0);

            // The partner stops: the next sync retries without progress, which is a stalled job after 2 s.
            await dr.DisposeAsync();
            dr = null;
            using var http = new HttpClient { BaseAddress = _fixture.Server.Http };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _fixture.Server.Token);
            using var started = await http.PostAsync("/api/v1/replicas/lagging/sync?wait=0", null);
            Assert.Equal(HttpStatusCode.Accepted, started.StatusCode);
            var job = (await started.Content.ReadFromJsonAsync<JobDto>(ApiJson.Options))!;
            var stalled = Alert(page, "job-stalled", job.Id);
            await Expect(stalled).ToContainTextAsync("has made no progress for", new() { Timeout = 20_000 });
            await ConsoleBrowser.ScreenshotAsync(page, "alert-job-stalled");
            await home.CancelJobAsync(job.Id);
            await Expect(stalled).ToHaveCountAsync(0, new() { Timeout = 20_000 });
        }
        finally
        {
            if (dr is not null)
            {
                await dr.DisposeAsync();
            }

            await home.SetAlertThresholdsAsync(new UpdateAlertThresholdsRequest(StalledJob: "10m", Rpo: "1h"));
        }
    }

    [Fact]
    public async Task A_failed_policy_run_raises_the_alert_and_the_next_good_run_clears_it()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("quiet", 8 * MiB));

        // The policy quiesces an application host whose agent cannot be reached, and may not fall back
        // to a crash-consistent snapshot: its run fails, and says why.
        await api.AddHostAsync(new AddHostRequest("gone", $"127.0.0.1:{FreePort.FindStable()}", new string('d', 64)));
        var strict = new PolicyRequest("quiet-hourly", Volume: "quiet", Schedule: "hourly", KeepLast: 3, Hosts: ["gone"], Fallback: "skip", Verify: false);
        await api.CreatePolicyAsync(strict);
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("fred", TokenRoles.Operator));
        var failed = Alert(page, "policy-failed", "quiet");
        await Expect(failed).ToHaveCountAsync(0);
        try
        {
            await api.RunPolicyAsync("quiet-hourly");
        }
        catch (TidemarkApiException)
        {
            // The run's failure may come back as the request's answer too; the policy keeps it either way.
        }

        Assert.NotNull((await api.GetPolicyAsync("quiet-hourly")).LastError);
        await Expect(failed).ToContainTextAsync("policy quiet-hourly failed");
        await ConsoleBrowser.ScreenshotAsync(page, "alert-policy-failed");

        // Allowed to fall back to crash-consistent, the next run succeeds: the alert goes.
        await api.UpdatePolicyAsync(strict with { Fallback = "crash" });
        await api.RunPolicyAsync("quiet-hourly");
        Assert.Null((await api.GetPolicyAsync("quiet-hourly")).LastError);
        await Expect(failed).ToHaveCountAsync(0);
    }

    [Fact]
    public async Task Thresholds_are_admin_only_to_change_validated_audited_and_survive_a_restart()
    {
        using var directory = new TempDirectory();
        var server = await ServerProcess.StartAsync(directory.Path);
        try
        {
            using var admin = server.Client();
            var operatorToken = (await admin.CreateTokenAsync(new CreateTokenRequest("otto", TokenRoles.Operator))).Secret;
            var auditorToken = (await admin.CreateTokenAsync(new CreateTokenRequest("ada", TokenRoles.Auditor))).Secret;
            using (var auditor = server.Client(auditorToken))
            {
                Assert.Equal(new AlertThresholdsDto(85, "10m", "1h", "config"), await auditor.GetAlertThresholdsAsync());
            }

            using (var op = server.Client(operatorToken))
            {
                var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => op.SetAlertThresholdsAsync(new UpdateAlertThresholdsRequest(PoolFullPercent: 90)));
                Assert.Equal(HttpStatusCode.Forbidden, refused.Status);
            }

            // Each bad value is refused with a problem document naming the range, and nothing changes.
            foreach (var (request, says) in new (UpdateAlertThresholdsRequest, string)[]
            {
                (new(PoolFullPercent: 150), "poolFullPercent must be between 1 and 100"),
                (new(PoolFullPercent: 0), "poolFullPercent must be between 1 and 100"),
                (new(PoolFullPercent: 90, StalledJob: "soon"), "stalledJob must be a duration between 1s and 30d, written like 30s, 10m, 1h or 2d; not 'soon'"),
                (new(Rpo: "31d"), "rpo must be a duration between 1s and 30d"),
                (new(Rpo: "745h"), "rpo must be a duration between 1s and 30d"),
                (new(StalledJob: "500ms"), "stalledJob must be a duration between 1s and 30d"),
            })
            {
                var bad = await Assert.ThrowsAsync<TidemarkApiException>(() => admin.SetAlertThresholdsAsync(request));
                Assert.Equal((HttpStatusCode.BadRequest, true), (bad.Status, bad.Message.Contains(says, StringComparison.Ordinal)));
            }

            Assert.Equal("config", (await admin.GetAlertThresholdsAsync()).Source);
            Assert.Equal(new AlertThresholdsDto(90, "15m", "1h", "api"), await admin.SetAlertThresholdsAsync(new UpdateAlertThresholdsRequest(PoolFullPercent: 90, StalledJob: "15m")));
            Assert.Contains(await admin.ListEventsAsync(kind: "alerts.thresholds"), e => e.Outcome == "ok" && e.Actor == "admin");
            Assert.Contains(await admin.ListEventsAsync(kind: "alerts.thresholds"), e => e.Actor == "otto" && e.Outcome == "failed"); // a 403 is kept in the main log

            // Kept in the pool: a restart (whose config file still says 10m) keeps the API's values.
            await server.DisposeAsync();
            server = await ServerProcess.StartAsync(directory.Path);
            using var again = server.Client();
            Assert.Equal(new AlertThresholdsDto(90, "15m", "1h", "api"), await again.GetAlertThresholdsAsync());

            // The CLI shows and changes them; a bad value exits 1 (the server refused) with its reason.
            var shown = await CliProcess.RunAsync("alerts", "thresholds", "--data", directory.Path);
            Assert.Equal(0, shown.ExitCode);
            Assert.Contains("90%", shown.StandardOutput, StringComparison.Ordinal);
            var set = await CliProcess.RunAsync("alerts", "thresholds", "--pool-full", "92.5", "--rpo", "30m", "--json", "--data", directory.Path);
            Assert.Equal(0, set.ExitCode);
            Assert.Contains("\"poolFullPercent\": 92.5", set.StandardOutput, StringComparison.Ordinal);
            Assert.Equal(new AlertThresholdsDto(92.5, "15m", "30m", "api"), await again.GetAlertThresholdsAsync());
            var refusedCli = await CliProcess.RunAsync("alerts", "thresholds", "--pool-full", "150", "--data", directory.Path);
            Assert.Equal(1, refusedCli.ExitCode);
            Assert.Contains("between 1 and 100", refusedCli.StandardError, StringComparison.Ordinal);
            var notANumber = await CliProcess.RunAsync("alerts", "thresholds", "--pool-full", "lots", "--data", directory.Path);
            Assert.Equal(2, notANumber.ExitCode);

            // Past a day: a weekly DR copy's RPO in days, a long rebuild's stall allowance in hours.
            Assert.Equal(new AlertThresholdsDto(92.5, "36h", "7d", "api"), await again.SetAlertThresholdsAsync(new UpdateAlertThresholdsRequest(StalledJob: "36h", Rpo: "7d")));
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    private static async Task<(string, double)> ThresholdsAsync(TidemarkClient api)
    {
        var t = await api.GetAlertThresholdsAsync();
        return (t.Source, t.PoolFullPercent);
    }
}
