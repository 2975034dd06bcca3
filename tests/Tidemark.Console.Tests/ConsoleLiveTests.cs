using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Playwright;
using Tidemark.Api;
using static Microsoft.Playwright.Assertions;

namespace Tidemark.Console.Tests;

/// <summary>
/// Alerts, live updates and the wizards of the console in headless Chromium against a real
/// `tidemark serve`; results are checked through the API.
/// </summary>
public sealed class ConsoleLiveTests : IClassFixture<ConsoleFixture>
{
    private const long GiB = 1L << 30;

    private readonly ConsoleFixture _fixture;

    public ConsoleLiveTests(ConsoleFixture fixture) => _fixture = fixture;

    private HttpClient Bearer()
    {
        var http = new HttpClient { BaseAddress = _fixture.Server.Http };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _fixture.Server.Token);
        return http;
    }

    [Fact]
    public async Task Dashboard_shows_a_new_alert_without_reloading_and_links_to_the_failed_job()
    {
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("olivia", TokenRoles.Operator));
        await Expect(page.Locator("#live")).ToHaveTextAsync("live");
        await Expect(page.Locator("#alerts li[data-kind='job-failed']")).ToHaveCountAsync(0);

        // Deleting a held snapshot fails inside its job: a failed job, which is an alert.
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("alerted", GiB));
        await api.CreateSnapshotAsync("alerted", "keep");
        await api.HoldSnapshotAsync("alerted@keep", new HoldRequest(Reason: "legal"));
        await Assert.ThrowsAsync<TidemarkApiException>(() => api.DeleteSnapshotAsync("alerted@keep"));
        var failed = Assert.Single(await api.ListJobsAsync(), j => j.Kind == "snapshot.delete" && j.State == "failed");

        var alert = page.Locator("#alerts li[data-kind='job-failed']");
        await Expect(alert).ToContainTextAsync($"job {failed.Id} (snapshot.delete) failed");
        await ConsoleBrowser.ScreenshotAsync(page, "dashboard-alert");

        // The same list is at the API route, computed by the same evaluator.
        using (var http = Bearer())
        {
            var alerts = await http.GetFromJsonAsync<List<AlertDto>>("/api/v1/alerts", ApiJson.Options);
            Assert.Contains(alerts!, a => a.Kind == "job-failed" && a.Link == $"#/jobs?job={failed.Id}");
        }

        await alert.GetByRole(AriaRole.Link).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Jobs" })).ToBeVisibleAsync();
        var row = page.Locator($"tr.focus[data-job='{failed.Id}']");
        await Expect(row).ToContainTextAsync("failed");

        // The jobs page follows the stream: a job started now appears without a reload.
        await api.VerifyAsync();
        await Expect(page.Locator("tbody tr").Filter(new() { HasText = "pool.verify" }).First).ToContainTextAsync("succeeded");
        await ConsoleBrowser.ScreenshotAsync(page, "jobs-live");
    }

    [Fact]
    public async Task Live_streams_are_capped_per_session_refused_to_bearer_clients_and_closed_on_sign_out()
    {
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("sam", TokenRoles.Auditor));
        await Expect(page.Locator("#live")).ToHaveTextAsync("live"); // the page's own stream: one of three

        const string OpenStreams = """
            async () => {
              window.__streams = [];
              const statuses = [];
              for (let i = 0; i < 3; i++) {
                const r = await fetch('/api/v1/console/updates');
                statuses.push(r.status);
                if (r.ok) window.__streams.push(r.body.getReader());
              }
              return statuses.join(',');
            }
            """;
        Assert.Equal("200,200,429", await page.EvaluateAsync<string>(OpenStreams));

        using (var http = Bearer())
        {
            using var refused = await http.GetAsync("/api/v1/console/updates");
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        }

        // Signing out ends the session's open streams: each reader reaches its end.
        const string DrainStreams = """
            async () => {
              const ends = await Promise.all(window.__streams.map(async r => { while (!(await r.read()).done) {} return true; }));
              return ends.length;
            }
            """;
        var drained = page.EvaluateAsync<int>(DrainStreams);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        Assert.Equal(2, await drained);
        Assert.Equal(401, await page.EvaluateAsync<int>("async () => (await fetch('/api/v1/console/updates')).status"));
    }

    [Fact]
    public async Task Policy_wizard_previews_retention_from_the_server_and_creates_the_policy()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("pw", GiB));
        foreach (var name in new[] { "s1", "s2", "s3", "s4" })
        {
            await api.CreateSnapshotAsync("pw", name);
            await Task.Delay(20); // distinct creation times, so "the newest two" is well defined
        }

        await api.HoldSnapshotAsync("pw@s1", new HoldRequest(Reason: "audit"));
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("paula", TokenRoles.Operator));
        await page.GotoAsync("/#/wizard/policy?volume=pw");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "New protection policy" })).ToBeVisibleAsync();
        await Expect(page.GetByLabel("Volume or group")).ToHaveValueAsync("volume:pw");
        await page.GetByLabel("Policy name").FillAsync("pw-hourly");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByLabel("Schedule (every").FillAsync("hourly");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByLabel("Keep the last").FillAsync("2");
        await page.GetByLabel("Daily: one per day, for").FillAsync("");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();

        // The newest two are kept, s2 goes, s1 stays because it is held.
        var preview = page.GetByRole(AriaRole.Table, new() { Name = "Retention preview" });
        await Expect(preview).ToBeVisibleAsync();
        await Expect(page.GetByText("It keeps 3 and deletes 1 of the 4 snapshots")).ToBeVisibleAsync();
        await Expect(preview.Locator("tr[data-verdict='drop']")).ToContainTextAsync("pw@s2");
        await Expect(preview.Locator("tr[data-verdict='protected']")).ToContainTextAsync("on hold");
        await ConsoleBrowser.ScreenshotAsync(page, "policy-wizard-preview");
        Assert.Equal(4, (await api.ListSnapshotsAsync("pw")).Count); // a preview changes nothing

        await page.GetByRole(AriaRole.Button, new() { Name = "Create policy" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Policy pw-hourly created.");
        var policy = await api.GetPolicyAsync("pw-hourly");
        Assert.Equal(("pw", "hourly", 2, (int?)null), (policy.Definition.Volume, policy.Definition.Schedule, policy.Definition.KeepLast, policy.Definition.KeepDaily));
        Assert.Contains(await api.ListEventsAsync(kind: "policy.create"), e => e.Actor == "paula" && e.Outcome == "ok");
    }

    [Fact]
    public async Task Policies_page_edits_through_the_wizard_keeping_unshown_settings_runs_and_deletes_with_typed_confirmation()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("pp", GiB));
        await api.CreatePolicyAsync(new PolicyRequest("pp-daily", Volume: "pp", Schedule: "daily 02:30", KeepLast: 5, Verify: false, PreferConsistent: true));
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("petra", TokenRoles.Operator));
        await page.GetByRole(AriaRole.Link, new() { Name = "Policies", Exact = true }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Policies" })).ToBeVisibleAsync();
        var row = page.Locator("tr[data-policy='pp-daily']");
        await Expect(row).ToContainTextAsync("daily 02:30");
        await Expect(row).ToContainTextAsync("5 last");
        await Expect(row).ToContainTextAsync("never (0 kept)");

        // Edit: the wizard opens on the policy; the retention changes, and the settings the wizard
        // has no step for (verification off, prefer consistent) survive the PUT.
        await row.GetByRole(AriaRole.Link, new() { Name = "Edit policy pp-daily" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Protection policy pp-daily" })).ToBeVisibleAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByLabel("Keep the last").FillAsync("3");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Save policy" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Policy pp-daily saved.");
        var saved = (await api.GetPolicyAsync("pp-daily")).Definition;
        Assert.Equal((3, "daily 02:30", (bool?)false, (bool?)true), (saved.KeepLast, saved.Schedule, saved.Verify, saved.PreferConsistent));

        // Run now takes a snapshot the page then counts.
        await page.GotoAsync("/#/policies");
        await row.GetByRole(AriaRole.Button, new() { Name = "Run policy pp-daily now" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Policy pp-daily ran.");
        await Expect(row).ToContainTextAsync("(1 kept)");
        Assert.Single(await api.ListSnapshotsAsync("pp"));

        // Delete asks for the policy's name, says its snapshots stay, and keeps them.
        await row.GetByRole(AriaRole.Button, new() { Name = "Delete policy pp-daily" }).ClickAsync();
        var dialog = page.GetByRole(AriaRole.Dialog, new() { Name = "Delete policy pp-daily?" });
        await Expect(dialog).ToContainTextAsync("The 1 snapshot(s) it made are kept");
        await Expect(dialog.GetByRole(AriaRole.Button, new() { Name = "Delete policy" })).ToBeDisabledAsync();
        await dialog.GetByLabel("Type pp-daily to confirm").FillAsync("pp-daily");
        await dialog.GetByRole(AriaRole.Button, new() { Name = "Delete policy" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Policy pp-daily deleted.");
        await Expect(row).ToHaveCountAsync(0);
        Assert.DoesNotContain(await api.ListPoliciesAsync(), p => p.Definition.Name == "pp-daily");
        Assert.Single(await api.ListSnapshotsAsync("pp"));
        foreach (var kind in new[] { "policy.update", "policy.run", "policy.delete" })
        {
            Assert.Contains(await api.ListEventsAsync(kind: kind), e => e.Actor == "petra" && e.Outcome == "ok" && e.Subject == "pp-daily");
        }
    }

    [Fact]
    public async Task Policy_preview_of_an_existing_policy_judges_only_the_snapshots_it_made()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("owned", GiB));
        await api.CreateSnapshotAsync("owned", "by-hand");
        await api.CreatePolicyAsync(new PolicyRequest("owned-p", Volume: "owned", Schedule: "hourly", KeepLast: 5));
        await api.RunPolicyAsync("owned-p");
        await Task.Delay(1100); // policy snapshots are named by the second
        await api.RunPolicyAsync("owned-p");

        using var http = Bearer();
        using var answer = await http.PostAsJsonAsync("/api/v1/policies/preview", new PolicyRequest("owned-p", Volume: "owned", Schedule: "hourly", KeepLast: 1), ApiJson.Options);
        answer.EnsureSuccessStatusCode();
        var preview = (await answer.Content.ReadFromJsonAsync<PolicyPreviewDto>(ApiJson.Options))!;
        Assert.False(preview.AsIfOwned);
        Assert.Equal(["keep", "drop", "unmanaged"], preview.Snapshots.Select(s => s.Verdict));
        Assert.Equal("by-hand", preview.Snapshots[^1].Name);
        Assert.Equal(3, (await api.ListSnapshotsAsync("owned")).Count);

        // A bad rule is refused the way creating the policy would be.
        using var bad = await http.PostAsJsonAsync("/api/v1/policies/preview", new PolicyRequest("owned-p", Volume: "nosuch", Schedule: "hourly"), ApiJson.Options);
        Assert.Equal(HttpStatusCode.NotFound, bad.StatusCode);
    }

    [Fact]
    public async Task Recovery_wizard_opens_a_view_of_the_chosen_point_in_time_and_exports_it()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("rv", GiB));
        await api.CreateSnapshotAsync("rv", "monday");
        await api.CreateSnapshotAsync("rv", "tuesday");
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("rita", TokenRoles.Operator));
        await page.GetByRole(AriaRole.Link, new() { Name = "Recover", Exact = true }).ClickAsync();
        await page.GetByLabel("Volume").SelectOptionAsync("rv");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByRole(AriaRole.Radio, new() { Name = "monday" }).CheckAsync();
        await ConsoleBrowser.ScreenshotAsync(page, "recovery-wizard-timeline");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();

        // No paired host declares a mail store on rv: mail is shown, not offered, and says why.
        await Expect(page.GetByRole(AriaRole.Radio, new() { Name = "Mail: find messages in it and restore them" })).ToBeDisabledAsync();
        await Expect(page.GetByText("no paired host's agent declares a mail store on rv")).ToBeVisibleAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await Expect(page.GetByLabel("View name")).ToHaveValueAsync("rv-monday-recovery");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByLabel("Export over").SelectOptionAsync("nbd");
        await page.GetByRole(AriaRole.Button, new() { Name = "Recover" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("View rv-monday-recovery of rv@monday is ready.");
        await Expect(page.Locator("#recovery-address")).ToContainTextAsync("nbd://");
        await ConsoleBrowser.ScreenshotAsync(page, "recovery-wizard-done");

        var view = await api.GetVolumeAsync("rv-monday-recovery");
        Assert.Equal(("view", "rv@monday"), (view.Kind, view.Origin));
        var export = Assert.Single(await api.ListExportsAsync(), e => e.Target == "rv-monday-recovery");
        Assert.True(export.ReadOnly);
        Assert.Contains(await api.ListEventsAsync(kind: "view.create"), e => e.Actor == "rita" && e.Outcome == "ok");
    }

    [Fact]
    public async Task Snapshot_stream_export_downloads_for_an_operator_and_is_not_offered_to_an_auditor()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("st", GiB));
        await api.CreateSnapshotAsync("st", "one");
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("steve", TokenRoles.Operator));
        await page.GotoAsync("/#/volumes/st");
        var download = await page.RunAndWaitForDownloadAsync(() => page.GetByRole(AriaRole.Link, new() { Name = "Export stream" }).ClickAsync());
        Assert.Equal("st@one.tmstream", download.SuggestedFilename);
        Assert.Null(await download.FailureAsync());
        Assert.True(new FileInfo((await download.PathAsync())!).Length > 0);

        var auditor = await _fixture.SignInAsync(await _fixture.TokenAsync("sue", TokenRoles.Auditor));
        await auditor.GotoAsync("/#/volumes/st");
        await Expect(auditor.GetByRole(AriaRole.Heading, new() { Name = "Snapshots of st" })).ToBeVisibleAsync();
        await Expect(auditor.GetByRole(AriaRole.Link, new() { Name = "Export stream" })).ToHaveCountAsync(0);
    }
}
