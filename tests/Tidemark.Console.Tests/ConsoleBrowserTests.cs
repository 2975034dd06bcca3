using Microsoft.Playwright;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace Tidemark.Console.Tests;

/// <summary>
/// The web console in headless Chromium against a real `tidemark serve`: every result is checked
/// through the API, not through what the page shows.
/// </summary>
public sealed class ConsoleBrowserTests : IClassFixture<ConsoleFixture>
{
    private const long GiB = 1L << 30;

    // A change from inside the signed-in page, as another script on the page could make it; the
    // CSRF header is sent only when asked for.
    private const string PostVolumeScript = """
        async ([name, withCsrf]) => {
          const session = await (await fetch('/console/session')).json();
          const headers = { 'Content-Type': 'application/json' };
          if (withCsrf) headers['X-Tidemark-CSRF'] = session.csrf;
          const r = await fetch('/api/v1/volumes', { method: 'POST', headers, body: JSON.stringify({ name, sizeBytes: 1048576 }) });
          const body = await r.json();
          return `${r.status} ${body.code ?? ''}`;
        }
        """;

    private readonly ConsoleFixture _fixture;

    public ConsoleBrowserTests(ConsoleFixture fixture) => _fixture = fixture;

    [Fact]
    public async Task Wizard_creates_a_protected_volume_recorded_under_the_signed_in_name()
    {
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("alice", TokenRoles.Operator));
        await page.GetByRole(AriaRole.Link, new() { Name = "New protected volume" }).ClickAsync();
        await page.GetByLabel("Name").FillAsync("mail");
        await page.GetByLabel("Size (e.g. 10G)").FillAsync("2G");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByLabel("Export").SelectOptionAsync("nbd");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByLabel("Schedule").SelectOptionAsync("every 1h");
        await page.GetByLabel("Keep the last").FillAsync("12");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Review" })).ToBeVisibleAsync();
        await ConsoleBrowser.ScreenshotAsync(page, "wizard-review");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Volume mail is ready.");
        await ConsoleBrowser.ScreenshotAsync(page, "wizard-done");

        using var api = _fixture.Admin();
        var volume = await api.GetVolumeAsync("mail");
        Assert.Equal(2 * GiB, volume.SizeBytes);
        Assert.Contains(await api.ListExportsAsync(), e => e.Target == "mail" && e.Protocol == "nbd");
        var policy = await api.GetPolicyAsync("mail-protect");
        Assert.Equal("mail", policy.Definition.Volume);
        Assert.Equal("every 1h", policy.Definition.Schedule);
        Assert.Equal(12, policy.Definition.KeepLast);
        foreach (var kind in new[] { "volume.create", "export.create", "policy.create" })
        {
            var events = await api.ListEventsAsync(kind: kind);
            Assert.Contains(events, e => e.Actor == "alice" && e.Outcome == "ok");
        }
    }

    [Fact]
    public async Task Snapshot_timeline_takes_holds_rolls_back_and_opens_a_view_and_every_page_renders()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("db", GiB));
        await api.CreateSnapshotAsync("db", "monday");
        await api.CreateVolumeAsync(new CreateVolumeRequest("scratch", GiB));
        var page = await _fixture.SignInAsync(_fixture.Server.Token);
        await Expect(page.Locator("#capacity-chart canvas")).ToHaveCountAsync(1);
        await ConsoleBrowser.ScreenshotAsync(page, "dashboard");

        await page.GotoAsync("/#/volumes/db");
        await page.GetByLabel("Name (optional)").FillAsync("tuesday");
        await page.GetByRole(AriaRole.Button, new() { Name = "Take snapshot" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Snapshot taken.");
        Assert.Contains(await api.ListSnapshotsAsync("db"), s => s.Name == "tuesday");

        var monday = page.Locator("ol.timeline li").Filter(new() { HasText = "monday" });
        await monday.GetByRole(AriaRole.Button, new() { Name = "Hold" }).ClickAsync();
        await page.GetByLabel("Reason").FillAsync("legal");
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Hold" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("db@monday held.");
        var held = await api.GetSnapshotAsync("db@monday");
        Assert.True(held.HeldUntilReleased);
        Assert.Equal("legal", held.HoldReason);

        await monday.GetByRole(AriaRole.Button, new() { Name = "Roll back to this" }).ClickAsync();
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Roll back" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("db rolled back to monday");
        Assert.Contains(await api.ListEventsAsync(kind: "volume.rollback"), e => e.Subject == "db" && e.Outcome == "ok");

        await monday.GetByRole(AriaRole.Button, new() { Name = "Open a view" }).ClickAsync();
        await page.GetByLabel("View name").FillAsync("db-restore");
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Open view" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("View db-restore of db@monday opened");
        Assert.Equal("view", (await api.GetVolumeAsync("db-restore")).Kind);
        Assert.Contains(await api.ListExportsAsync(), e => e.Target == "db-restore");
        await ConsoleBrowser.ScreenshotAsync(page, "snapshots");

        // Deleting a volume needs its name typed: the button stays disabled until it matches.
        await page.GotoAsync("/#/volumes");
        await page.Locator("tr").Filter(new() { HasText = "scratch" }).GetByRole(AriaRole.Button, new() { Name = "Delete" }).ClickAsync();
        var confirm = page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Delete" });
        await Expect(confirm).ToBeDisabledAsync();
        await page.GetByLabel("Type scratch to confirm").FillAsync("scratc");
        await Expect(confirm).ToBeDisabledAsync();
        await page.GetByLabel("Type scratch to confirm").FillAsync("scratch");
        await confirm.ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Volume scratch deleted.");
        Assert.DoesNotContain(await api.ListVolumesAsync(), v => v.Name == "scratch");
        await ConsoleBrowser.ScreenshotAsync(page, "volumes");

        // A hash change re-renders in place: wait for the new page before reading its table.
        await page.GotoAsync("/#/events?kind=volume.rollback");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Events" })).ToBeVisibleAsync();
        await Expect(page.Locator("main tbody tr")).Not.ToHaveCountAsync(0);
        await Expect(page.Locator("main tbody")).ToContainTextAsync("volume.rollback");
        await ConsoleBrowser.ScreenshotAsync(page, "events");

        await api.VerifyAsync();
        await page.GotoAsync("/#/jobs");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Jobs" })).ToBeVisibleAsync();
        await Expect(page.Locator("tbody tr").Filter(new() { HasText = "pool.verify" }).First).ToContainTextAsync("succeeded");
        await ConsoleBrowser.ScreenshotAsync(page, "jobs");
    }

    [Fact]
    public async Task Rollback_under_an_attached_client_names_it_and_then_offers_to_end_its_session()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("inuse", GiB));
        await api.CreateSnapshotAsync("inuse", "base");
        await api.CreateExportAsync(new CreateExportRequest("inuse", "inuse"));
        using var client = await AttachedNbdClient.ConnectAsync(_fixture.Server.Nbd, "inuse");
        var page = await _fixture.SignInAsync(_fixture.Server.Token);
        await page.GotoAsync("/#/volumes/inuse");
        await page.Locator("ol.timeline li").Filter(new() { HasText = "base" }).GetByRole(AriaRole.Button, new() { Name = "Roll back to this" }).ClickAsync();
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Roll back" }).ClickAsync();

        // Refused first, naming the client; nothing changed until the forced rollback is confirmed.
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("disconnect them first");
        Assert.DoesNotContain(await api.ListSnapshotsAsync("inuse"), s => s.Name.StartsWith("pre-rollback", StringComparison.Ordinal));
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "End sessions and roll back" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("inuse rolled back to base");
        Assert.True(await client.ClosedByServerAsync(TimeSpan.FromSeconds(10)));
        Assert.Contains(await api.ListSnapshotsAsync("inuse"), s => s.Name.StartsWith("pre-rollback", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Volumes_page_resizes_and_exports_over_iscsi_with_chap_and_an_initiator_list()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("lun", GiB));
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("olga", TokenRoles.Operator));
        await page.GotoAsync("/#/volumes");
        var row = page.Locator("tbody tr").Filter(new() { Has = page.GetByRole(AriaRole.Link, new() { Name = "lun", Exact = true }) });

        // An operator may not delete volumes: the button is not offered.
        await Expect(row.GetByRole(AriaRole.Button, new() { Name = "Delete" })).ToHaveCountAsync(0);

        await row.GetByRole(AriaRole.Button, new() { Name = "Resize" }).ClickAsync();
        await page.GetByLabel("New size (e.g. 20G)").FillAsync("3G");
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Resize" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Volume lun resized to 3.0 GiB.");
        Assert.Equal(3 * GiB, (await api.GetVolumeAsync("lun")).SizeBytes);

        await page.Locator("tbody tr").Filter(new() { Has = page.GetByRole(AriaRole.Link, new() { Name = "lun", Exact = true }) })
            .GetByRole(AriaRole.Button, new() { Name = "Export" }).ClickAsync();
        await page.GetByLabel("Protocol").SelectOptionAsync("iscsi");
        await page.GetByLabel("iSCSI initiators allowed").FillAsync("iqn.2026-12.org.example:host1");
        await page.GetByLabel("iSCSI CHAP user").FillAsync("lunuser");
        await page.GetByLabel("iSCSI CHAP secret").FillAsync("twelve-chars-secret");
        await page.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Export" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("lun exported over iscsi.");
        var export = Assert.Single(await api.ListExportsAsync(), e => e.Target == "lun");
        Assert.Equal("iscsi", export.Protocol);
        Assert.Equal(["iqn.2026-12.org.example:host1"], export.AllowedInitiators);
        Assert.Equal("lunuser", export.ChapUser);
    }

    [Fact]
    public async Task Dashboard_summary_shows_protection_per_volume_and_is_compressed()
    {
        using var api = _fixture.Admin();
        await api.CreateVolumeAsync(new CreateVolumeRequest("prot", GiB));
        await api.CreateSnapshotAsync("prot", "first");
        await api.CreatePolicyAsync(new PolicyRequest("prot-hourly", Volume: "prot", Schedule: "hourly", KeepLast: 5));
        await api.CreateVolumeAsync(new CreateVolumeRequest("bare", GiB));

        using var http = new HttpClient(new HttpClientHandler { AutomaticDecompression = System.Net.DecompressionMethods.None }) { BaseAddress = _fixture.Server.Http };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/console/dashboard");
        request.Headers.Authorization = new("Bearer", _fixture.Server.Token);
        request.Headers.AcceptEncoding.ParseAdd("br");
        using var response = await http.SendAsync(request);
        response.EnsureSuccessStatusCode();
        Assert.Equal("br", Assert.Single(response.Content.Headers.ContentEncoding));
        await using var body = new System.IO.Compression.BrotliStream(await response.Content.ReadAsStreamAsync(), System.IO.Compression.CompressionMode.Decompress);
        var dashboard = (await System.Text.Json.JsonSerializer.DeserializeAsync<Tidemark.Server.WebConsole.ConsoleDashboardDto>(body, ApiJson.Options))!;

        var prot = Assert.Single(dashboard.Volumes, v => v.Name == "prot");
        Assert.Equal(("first", 1, "prot-hourly"), (prot.LastSnapshot, prot.Snapshots, prot.Policy));
        var bare = Assert.Single(dashboard.Volumes, v => v.Name == "bare");
        Assert.Equal((null, 0, null), (bare.LastSnapshot, bare.Snapshots, bare.Policy));
        Assert.NotEmpty(dashboard.Capacity);
        Assert.Equal(dashboard.Pool.CapacityBytes, dashboard.Capacity[^1].CapacityBytes);
        Assert.Equal("volume.create", dashboard.Events[0].Kind);
        Assert.Equal("bare", dashboard.Events[0].Subject);
        Assert.True(dashboard.Events.Zip(dashboard.Events.Skip(1)).All(p => p.First.Time >= p.Second.Time));
    }

    [Fact]
    public async Task Auditor_is_offered_no_change_and_the_server_refuses_one_anyway()
    {
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("carol", TokenRoles.Auditor));
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "New protected volume" })).ToHaveCountAsync(0);
        foreach (var wizard in new[] { "Protection policy", "Recover", "Replication set-up" })
        {
            await Expect(page.GetByRole(AriaRole.Link, new() { Name = wizard, Exact = true })).ToHaveCountAsync(0);
        }

        // The DR page is readable by every role; promoting is not offered.
        await page.GetByRole(AriaRole.Link, new() { Name = "Disaster recovery" }).ClickAsync();
        await Expect(page.GetByText("Promoting and failing back need an admin.")).ToBeVisibleAsync();
        await page.GotoAsync("/#/volumes");
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Volumes" })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Create" })).ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Delete" })).ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "Resize" })).ToHaveCountAsync(0);
        await ConsoleBrowser.ScreenshotAsync(page, "volumes-auditor");

        var answer = await page.EvaluateAsync<string>(PostVolumeScript, new object[] { "carols", true });
        Assert.Equal("403 forbidden", answer);
        using var api = _fixture.Admin();
        Assert.DoesNotContain(await api.ListVolumesAsync(), v => v.Name == "carols");
        Assert.Contains(await api.ListEventsAsync(kind: "volume.create"), e => e.Actor == "carol" && e.Outcome == "failed");
    }

    [Fact]
    public async Task A_change_without_the_csrf_token_is_refused()
    {
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("bob", TokenRoles.Operator));
        Assert.Equal("403 csrf", await page.EvaluateAsync<string>(PostVolumeScript, new object[] { "no-csrf", false }));
        Assert.StartsWith("201", await page.EvaluateAsync<string>(PostVolumeScript, new object[] { "with-csrf", true }));
        using var api = _fixture.Admin();
        var names = (await api.ListVolumesAsync()).Select(v => v.Name).ToList();
        Assert.DoesNotContain("no-csrf", names);
        Assert.Contains("with-csrf", names);
    }

    [Fact]
    public async Task Signing_out_or_revoking_the_token_ends_the_session()
    {
        var page = await _fixture.SignInAsync(await _fixture.TokenAsync("dave", TokenRoles.Operator));
        const string Status = "async () => (await fetch('/api/v1/volumes')).status";
        Assert.Equal(200, await page.EvaluateAsync<int>(Status));
        using (var api = _fixture.Admin())
        {
            await api.RevokeTokenAsync("dave");
        }

        Assert.Equal(401, await page.EvaluateAsync<int>(Status));

        var other = await _fixture.SignInAsync(await _fixture.TokenAsync("erin", TokenRoles.Auditor));
        await other.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await Expect(other.GetByRole(AriaRole.Heading, new() { Name = "Sign in" })).ToBeVisibleAsync();
        Assert.Equal(401, await other.EvaluateAsync<int>(Status));
    }

    [Fact]
    public async Task A_wrong_token_does_not_sign_in_and_the_cookie_is_httponly_and_strict()
    {
        var context = await _fixture.Browser.NewContextAsync(new() { BaseURL = _fixture.Server.Http.ToString().TrimEnd('/') });
        var page = await context.NewPageAsync();
        await page.GotoAsync("/");
        await page.GetByLabel("API token").FillAsync("not-a-token");
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("not one of this server's");
        Assert.Empty(await context.CookiesAsync());

        var signedIn = await _fixture.SignInAsync(_fixture.Server.Token);
        var cookie = Assert.Single(await signedIn.Context.CookiesAsync());
        Assert.True(cookie.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, cookie.SameSite);
        Assert.Equal(0, await signedIn.EvaluateAsync<int>("() => document.cookie.length"));
    }
}
