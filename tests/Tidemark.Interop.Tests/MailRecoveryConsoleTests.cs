using MailKit;
using MailKit.Search;
using Microsoft.Playwright;
using MimeKit;
using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;
using Xunit.Abstractions;
using static Microsoft.Playwright.Assertions;

namespace Tidemark.Interop.Tests;

/// <summary>
/// Issue 20's last wizard step, in a browser: the recovery wizard finds a deleted message in a
/// snapshot of a real Dovecot mail store (a volume that the paired agent declares as one), lists it
/// (a dry run followed as a job), and restores it through IMAP into <c>Recovered/&lt;date&gt;</c>,
/// where the user finds it with its flags and received date. A search with no match says so and
/// stays on the search; a read-only role is not offered mail recovery and the API refuses it.
/// Here rather than in Tidemark.Console.Tests because it needs this project's agent, nbdfuse/ext4
/// and Dovecot fixtures, which the console's browser fixture (a bare server) does not start.
/// </summary>
public sealed class MailRecoveryConsoleTests(ITestOutputHelper output)
{
    private const string Lost = "<quarterly-77@finance.example.org>";
    private static readonly DateTimeOffset LostReceived = new(2026, 10, 22, 9, 15, 0, TimeSpan.Zero);

    private const string PostRecoveryScript = """
        async ([host, snapshot]) => {
          const session = await (await fetch('/console/session')).json();
          const r = await fetch('/api/v1/recoveries/mail?wait=0', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', 'X-Tidemark-CSRF': session.csrf },
            body: JSON.stringify({ host, snapshot, filter: { users: ['alice'] }, target: { kind: 'list' } }),
          });
          const body = await r.json();
          return `${r.status} ${body.code ?? ''}`;
        }
        """;

    [Fact]
    public async Task Console_FindsDeletedMailInSnapshot_RestoresIntoRecoveredWithFlagsAndDate_NoMatchSaysSo_ReadOnlyRoleNotOffered()
    {
        using var temp = new TempDirectory();
        await using var store = await MailStoreVolume.StartAsync(temp, "mail", 256L << 20);
        var (server, client, live, dovecot) = (store.Server, store.Client, store.Live, store.Dovecot);
        for (var i = 0; i < 2; i++)
        {
            await dovecot.DeliverAsync($"friend{i}@example.org", "alice@example.test", $"From: friend{i}@example.org\nTo: alice@example.test\nSubject: hello {i}\nMessage-ID: <hello-{i}@example.org>\n\nbody {i}\n");
        }

        var lost = new MimeMessage(
            [new MailboxAddress("Finance", "reports@finance.example.org")],
            [new MailboxAddress("Alice", "alice@example.test")],
            "Quarterly report",
            new TextPart("plain") { Text = "Numbers.\n" })
        {
            MessageId = Lost.Trim('<', '>'),
        };
        await store.AppendAsync("alice", "alicepw", lost, MessageFlags.Seen | MessageFlags.Flagged, ["$Report"], LostReceived);

        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
        await client.CreateSnapshotAsync("mail", "before");
        await store.ExpungeAsync("alice", "alicepw", Lost);

        // The agent declares the mount as volume "mail" and the mail store on it: that is what makes
        // the wizard offer mail for this volume.
        var identity = await client.GetIdentityAsync();
        var agentDirectory = temp.Combine("agent");
        await using var agent = await AgentProcess.StartAsync(agentDirectory, identity.Fingerprint, deadlineSeconds: 10, [(live.MountPoint, "mail")], mail: [$"root={live.MountPoint},dovecot={Path.Combine(temp.Combine("dc"), "dovecot.conf")}"]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));
        var master = Path.Combine(agentDirectory, "imap-master");
        await File.WriteAllTextAsync(master, $"{DovecotInstance.MasterUser}:{DovecotInstance.MasterPassword}\n");
        File.SetUnixFileMode(master, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var operatorSecret = (await client.CreateTokenAsync(new CreateTokenRequest("olga", TokenRoles.Operator))).Secret;
        var auditorSecret = (await client.CreateTokenAsync(new CreateTokenRequest("audrey", TokenRoles.Auditor))).Secret;

        await using var browser = await ConsoleBrowser.StartAsync(patience: TimeSpan.FromMinutes(2));
        var page = await browser.SignInAsync(server.Http, operatorSecret);
        string into;
        try
        {
            var next = page.GetByRole(AriaRole.Button, new() { Name = "Next" });
            await page.GetByRole(AriaRole.Link, new() { Name = "Recover", Exact = true }).ClickAsync();
            await page.GetByLabel("Volume").SelectOptionAsync("mail");
            await next.ClickAsync();
            await page.GetByRole(AriaRole.Radio, new() { Name = "before" }).CheckAsync();
            await next.ClickAsync();
            await Expect(page.GetByText("mail store mail on app")).ToBeVisibleAsync();
            await page.GetByRole(AriaRole.Radio, new() { Name = "Mail: find messages in it and restore them" }).CheckAsync();
            await next.ClickAsync();

            // Nothing matches: the page says so in words and stays on the search.
            await page.GetByLabel("Mailbox owner (user)").FillAsync("alice");
            await page.GetByLabel("Subject contains").FillAsync("no such subject");
            await next.ClickAsync();
            await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("No message in mail@before matches user \"alice\", subject \"no such subject\". Widen the search");
            await Expect(page.GetByLabel("Subject contains")).ToBeVisibleAsync();

            await page.GetByLabel("Subject contains").FillAsync("");
            await page.GetByLabel("From contains").FillAsync("FINANCE.example");
            await next.ClickAsync();
            await Expect(page.Locator("#mail-summary")).ToContainTextAsync("1 message(s)");
            var matches = page.GetByRole(AriaRole.Table, new() { Name = "Matching messages" });
            await Expect(matches).ToContainTextAsync("Quarterly report");
            await Expect(matches).ToContainTextAsync("$Report");
            await ConsoleBrowser.ScreenshotAsync(page, "mail-recovery-matches");
            await next.ClickAsync();

            await page.GetByLabel("IMAP server (HOST:PORT, as the recovery host reaches it)").FillAsync($"127.0.0.1:{dovecot.ImapPort}");
            await page.GetByLabel("TLS").SelectOptionAsync("none");
            into = await page.GetByLabel("Into folder").InputValueAsync();
            Assert.StartsWith("Recovered/", into, StringComparison.Ordinal);
            await page.GetByRole(AriaRole.Button, new() { Name = "Restore" }).ClickAsync();
            var outcomes = page.GetByRole(AriaRole.Table, new() { Name = "Outcome per message" });
            await Expect(outcomes.Locator("tbody tr")).ToHaveCountAsync(1);
            await Expect(outcomes.Locator("tbody tr")).ToContainTextAsync("restored");
            await Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync("1 restored, 0 already there, 0 failed.");
            await ConsoleBrowser.ScreenshotAsync(page, "mail-recovery-restored");
        }
        catch
        {
            await ConsoleBrowser.ScreenshotAsync(page, "mail-recovery-failed");
            output.WriteLine(agent.Log);
            throw;
        }

        // As the user sees it: back in Recovered/<date>, with its flags, keyword and received date.
        using (var imap = await store.LoginAsync("alice", "alicepw"))
        {
            var folder = await imap.GetFolderAsync(into);
            await folder.OpenAsync(FolderAccess.ReadOnly);
            var uid = Assert.Single(await folder.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost)));
            var summary = Assert.Single(await folder.FetchAsync([uid], MessageSummaryItems.Flags | MessageSummaryItems.InternalDate));
            Assert.Equal(MessageFlags.Seen | MessageFlags.Flagged, summary.Flags!.Value & ~MessageFlags.Recent);
            Assert.Contains("$Report", summary.Keywords);
            Assert.Equal(LostReceived, summary.InternalDate);
            await imap.DisconnectAsync(true);
        }

        // Both runs (the empty search is a run too) are the signed-in person's, and left no view behind.
        // A job answers before its clean-up, and its event follows the view's deletion: wait for that.
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while ((await client.ListVolumesAsync()).Count > 1 || !(await client.ListEventsAsync()).Any(e => e.Kind == "recovery.mail" && e.Message.Contains(": restored", StringComparison.Ordinal)))
        {
            Assert.True(DateTime.UtcNow < deadline, "the recovery's clean-up did not end within 2 minutes");
            await Task.Delay(100);
        }

        var events = (await client.ListEventsAsync()).Where(e => e.Kind == "recovery.mail").ToList();
        Assert.Contains(events, e => e.Actor == "olga" && e.Outcome == "ok" && e.Message.Contains(": restored", StringComparison.Ordinal));
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));

        // A read-only role: no Recover link, the wizard offers nothing, and the API refuses the run.
        var auditor = await browser.SignInAsync(server.Http, auditorSecret);
        await Expect(auditor.GetByRole(AriaRole.Link, new() { Name = "Recover", Exact = true })).ToHaveCountAsync(0);
        await auditor.GotoAsync("/#/wizard/recovery");
        await Expect(auditor.GetByText("Your role may not open views or recover mail.")).ToBeVisibleAsync();
        Assert.Equal(0, await auditor.GetByRole(AriaRole.Button, new() { Name = "Restore" }).CountAsync());
        Assert.Equal("403 forbidden", await auditor.EvaluateAsync<string>(PostRecoveryScript, new object[] { "app", "mail@before" }));
        Assert.DoesNotContain(await client.ListJobsAsync(), j => j.Actor == "audrey");
    }
}
