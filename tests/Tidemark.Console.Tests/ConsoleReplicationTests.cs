using Microsoft.Playwright;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace Tidemark.Console.Tests;

/// <summary>The replication set-up and disaster wizards against two real servers (home: the fixture's; DR: started here).</summary>
public sealed class ConsoleReplicationTests : IClassFixture<ConsoleFixture>
{
    private const long GiB = 1L << 30;

    private readonly ConsoleFixture _fixture;

    public ConsoleReplicationTests(ConsoleFixture fixture) => _fixture = fixture;

    [Fact]
    public async Task Wizards_pair_replicate_with_first_sync_then_promote_at_dr_with_a_typed_confirmation_and_fail_back()
    {
        using var drDirectory = new TempDirectory();
        await using var dr = await ServerProcess.StartAsync(drDirectory.Path);
        using var home = _fixture.Admin();
        using var drApi = dr.Client();
        var homeId = await home.GetIdentityAsync();
        var drId = await drApi.GetIdentityAsync();
        await drApi.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint)); // the other side's half of the pairing
        await home.CreateVolumeAsync(new CreateVolumeRequest("rep", GiB));

        // Set-up at home: pair the DR server, choose the volume, stream seed, first sync with progress.
        var page = await _fixture.SignInAsync(_fixture.Server.Token);
        await page.GetByRole(AriaRole.Link, new() { Name = "Replication set-up" }).ClickAsync();
        await Expect(page.Locator("select[name=partner]")).ToHaveValueAsync(""); // no partner yet: "pair a new one"
        await page.GetByLabel("Partner name").FillAsync("dr");
        await page.GetByLabel("Its replication address").FillAsync(drId.ReplicationAddress!);
        await page.GetByLabel("Its certificate fingerprint").FillAsync(drId.Fingerprint);
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByRole(AriaRole.Checkbox, new() { Name = "rep" }).CheckAsync();
        await page.GetByLabel("Export prepared at the partner").SelectOptionAsync("nbd");
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByRole(AriaRole.Radio, new() { Name = "Send everything" }).CheckAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Next" }).ClickAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Start replication" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("Replication to dr set up for rep.", new() { Timeout = 60_000 });
        await Expect(page.GetByRole(AriaRole.List, new() { Name = "Progress" })).ToContainTextAsync("first sync done", new() { Timeout = 60_000 });
        await ConsoleBrowser.ScreenshotAsync(page, "replication-wizard-done");
        Assert.Contains(await home.ListPartnersAsync(), p => p.Name == "dr" && p.Fingerprint == drId.Fingerprint);
        Assert.NotNull(Assert.Single(await home.ListReplicasAsync(), r => r.Volume == "rep").LastSyncAt);
        Assert.Contains(await drApi.ListIncomingAsync(), r => r.Volume == "rep" && r.LastSnapshot is not null);

        // The replication page: the partner answers its link test, the replica shows where it goes,
        // and a sync started there follows its job to the end.
        await page.GetByRole(AriaRole.Link, new() { Name = "Replication", Exact = true }).ClickAsync();
        var partnerRow = page.Locator("tr[data-partner='dr']");
        await Expect(partnerRow).ToContainTextAsync(drId.ReplicationAddress!);
        await partnerRow.GetByRole(AriaRole.Button, new() { Name = "Test link to dr" }).ClickAsync();
        await Expect(partnerRow).ToContainTextAsync("answered: Tidemark");
        var replicaRow = page.Locator("tr[data-replica='rep']");
        await Expect(replicaRow).ToContainTextAsync("dr: rep");
        await Expect(replicaRow).ToContainTextAsync("active");
        var syncsBefore = (await home.ListJobsAsync()).Count(j => j.Kind == "replica.sync" && j.State == "succeeded");
        await replicaRow.GetByRole(AriaRole.Button, new() { Name = "Sync rep now" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("rep synced to dr.", new() { Timeout = 60_000 });
        Assert.Equal(syncsBefore + 1, (await home.ListJobsAsync()).Count(j => j.Kind == "replica.sync" && j.State == "succeeded"));
        await ConsoleBrowser.ScreenshotAsync(page, "replication-page");

        // Disaster at DR: the promotion needs the replica's name typed.
        var drPage = await _fixture.SignInAsync(dr.Token, dr.Http);
        await drPage.GetByRole(AriaRole.Link, new() { Name = "Disaster recovery" }).ClickAsync();
        var row = drPage.Locator("tr[data-volume='rep']");
        await row.GetByRole(AriaRole.Button, new() { Name = "Promote" }).ClickAsync();
        var confirm = drPage.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Promote" });
        await Expect(confirm).ToBeDisabledAsync();
        await drPage.GetByLabel("Type rep to confirm").FillAsync("rep");
        await confirm.ClickAsync();
        await Expect(drPage.GetByRole(AriaRole.Status)).ToContainTextAsync("rep is now a primary here");
        Assert.True(Assert.Single(await drApi.ListIncomingAsync(), r => r.Volume == "rep").Promoted);
        Assert.Contains(await drApi.ListExportsAsync(), e => e.Target == "rep" && e.Protocol == "nbd");
        Assert.Contains(await drApi.ListEventsAsync(kind: "replica.promote"), e => e.Outcome == "ok");
        await ConsoleBrowser.ScreenshotAsync(drPage, "disaster-promoted");

        // Fail-back: what changed at DR goes home; typed confirmation again.
        await drPage.Locator("tr[data-volume='rep']").GetByRole(AriaRole.Button, new() { Name = "Fail back" }).ClickAsync();
        await drPage.GetByLabel("Type rep to confirm").FillAsync("rep");
        await drPage.GetByRole(AriaRole.Dialog).GetByRole(AriaRole.Button, new() { Name = "Fail back" }).ClickAsync();
        await Expect(drPage.GetByRole(AriaRole.Status)).ToContainTextAsync("rep was sent back to home", new() { Timeout = 60_000 });
        Assert.Contains(await drApi.ListEventsAsync(kind: "replica.reverse"), e => e.Subject == "rep");
    }
}
