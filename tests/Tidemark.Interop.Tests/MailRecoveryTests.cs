using System.Globalization;
using System.Text.Json;
using MailKit;
using MailKit.Net.Imap;
using MailKit.Search;
using MimeKit;
using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;
using Tidemark.Recovery.Mail;
using Xunit.Abstractions;

namespace Tidemark.Interop.Tests;

/// <summary>
/// Issue 23's user story on a real mail server: Dovecot keeps its Maildir on ext4 on a Tidemark
/// volume; a snapshot is taken (crash-consistent: the file system is mounted, so its journal needs
/// replaying); the user deletes and expunges a flagged message; `tidemark recover mail` finds it in
/// the snapshot, puts it back over IMAP as the master user with its flags, keyword and received date,
/// skips it the second time, and exports another as .eml. Nothing of the recovery is left behind.
/// </summary>
public sealed class MailRecoveryTests(ITestOutputHelper output) : IDisposable
{
    private const string Lost = "<quarterly-2026-q3@finance.example.org>";
    private static readonly DateTimeOffset LostReceived = new(2026, 10, 20, 9, 15, 0, TimeSpan.Zero);

    // The recovery tool's work directories (and so its mounts) go under this test's own work root, so
    // "nothing left mounted" looks only at this run's mounts, never at another copy's running beside it.
    private readonly string _toolTemp = ToolTemp();

    // The tool runs with a 0700 TMPDIR (as under pam_tmpdir): its private Dovecot, running as the
    // mail's owner, must still reach its work directory, so that must not be under TMPDIR.
    private readonly string _privateTemp = Directory.CreateTempSubdirectory("tm-mailtest-private-").FullName;

    // The tool's header indexes (docs/adr/0012) are this test's own, not the host's /var/cache.
    private readonly string _indexes = Directory.CreateTempSubdirectory("tm-mailtest-index-").FullName;

    // Not recursive: the tool removes its own work directories; one left behind may still hold a
    // mount, and a recursive delete must never walk into a mounted file system.
    public void Dispose()
    {
        Directory.Delete(_indexes, recursive: true);
        Directory.Delete(_privateTemp, recursive: true);
        try
        {
            Directory.Delete(_toolTemp);
        }
        catch (IOException)
        {
            output.WriteLine($"left {_toolTemp}: not empty");
        }
    }

    // 0755, as the tool makes its default work root: the recovery's private Dovecot runs as the
    // mail's owner and must reach its configuration under the work directory.
    private static string ToolTemp()
    {
        var directory = Directory.CreateTempSubdirectory("tm-mailtest-tmp-").FullName;
        File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        return directory;
    }

    [Fact]
    public async Task RecoverMail_MessageExpungedAfterSnapshot_FoundRestoredWithFlagsThenSkippedAndExported()
    {
        using var temp = new TempDirectory();
        await using var store = await MailStoreVolume.StartAsync(temp, "mail", 512L << 20);
        var (server, client, live, dovecot) = (store.Server, store.Client, store.Live, store.Dovecot);

        for (var i = 0; i < 6; i++)
        {
            var user = i % 2 == 0 ? "alice" : "bob";
            await dovecot.DeliverAsync($"sender{i}@example.org", $"{user}@example.test", $"From: Sender {i} <sender{i}@example.org>\nTo: {user}@example.test\nSubject: delivered {i}\nMessage-ID: <delivered-{i}@example.org>\nDate: Mon, 19 Oct 2026 08:0{i}:00 +0000\n\nbody {i}\n");
        }

        using (var imap = await store.LoginAsync("alice", "alicepw"))
        {
            // The message to lose: seen, flagged, a keyword, a received date of its own.
            await imap.Inbox.AppendAsync(new AppendRequest(Message(Lost, "Quarterly figures Q3", null), MessageFlags.Seen | MessageFlags.Flagged, ["$Important"], LostReceived));
            var archive = (await imap.GetFolder(imap.PersonalNamespaces[0]).CreateAsync("Archive", isMessageFolder: true))!;
            await archive.AppendAsync(new AppendRequest(Message("<contract@legal.example.org>", "Signed contract", "contract.pdf"), MessageFlags.Seen, LostReceived.AddDays(-3)));
            await imap.DisconnectAsync(true);
        }

        // Crash-consistent on purpose: data synced, but the ext4 is mounted, so the snapshot's journal
        // must be replayed (into the recovery's view) before it mounts.
        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
        await client.CreateSnapshotAsync("mail", "before");
        await AssertJournalNeedsReplayAsync(client, temp);

        using (var imap = await store.LoginAsync("alice", "alicepw"))
        {
            await imap.Inbox.OpenAsync(FolderAccess.ReadWrite);
            var uids = await imap.Inbox.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost));
            Assert.Single(uids);
            await imap.Inbox.AddFlagsAsync(uids, MessageFlags.Deleted, silent: true);
            await imap.Inbox.ExpungeAsync();
            Assert.Empty(await imap.Inbox.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost)));
            await imap.DisconnectAsync(true);
        }

        var master = temp.Combine("master");
        await File.WriteAllTextAsync(master, $"{DovecotInstance.MasterUser}:{DovecotInstance.MasterPassword}\n");
        File.SetUnixFileMode(master, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        // Dry run: found by a case-insensitive subject substring, with the state it had in the snapshot.
        var found = await RecoverAsync(server, "mail@before", "--user", "alice", "--subject", "QUARTERLY");
        var match = Assert.Single(found.GetProperty("matches").EnumerateArray());
        Assert.Equal("alice", match.GetProperty("user").GetString());
        Assert.Equal("INBOX", match.GetProperty("folder").GetString());
        Assert.Equal(Lost, match.GetProperty("messageId").GetString());
        Assert.Equal(LostReceived, match.GetProperty("internalDate").GetDateTimeOffset());
        Assert.Equal([@"\Flagged", @"\Seen"], match.GetProperty("flags").EnumerateArray().Select(f => f.GetString()).Order());
        Assert.Equal(["$Important"], match.GetProperty("keywords").EnumerateArray().Select(f => f.GetString()));
        Assert.Empty(found.GetProperty("outcomes").EnumerateArray());

        // A refusal and an unreachable server are reported as such, and tear everything down too.
        await File.WriteAllTextAsync(temp.Combine("wrong"), $"{DovecotInstance.MasterUser}:not-the-password\n");
        File.SetUnixFileMode(temp.Combine("wrong"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var refused = await RunRecoverAsync(server, "mail@before", "--user", "alice", "--message-id", Lost, "--restore-to", "imap", "--imap", $"127.0.0.1:{dovecot.ImapPort}", "--master-user-file", temp.Combine("wrong"));
        Assert.True(refused.ExitCode == 1, $"wrong master password: exit {refused.ExitCode}\n{refused.StandardError}");
        Assert.Contains("refused master user admin for mailbox alice", refused.StandardError, StringComparison.Ordinal);
        var unreachable = await RunRecoverAsync(server, "mail@before", "--user", "alice", "--message-id", Lost, "--restore-to", "imap", "--imap", $"127.0.0.1:{FreePort.Find()}", "--master-user-file", master);
        Assert.True(unreachable.ExitCode == 3, $"no IMAP server: exit {unreachable.ExitCode}\n{unreachable.StandardError}");
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));

        string[] restore = ["mail@before", "--user", "alice", "--message-id", Lost, "--restore-to", "imap", "--imap", $"127.0.0.1:{dovecot.ImapPort}", "--master-user-file", master];
        var run = await RunRecoverAsync(server, restore);
        Assert.True(run.ExitCode == 0, $"restore: exit {run.ExitCode}\n{run.StandardError}");

        // The dry run indexed alice's messages in this snapshot: the restore opened only the match.
        Assert.Contains("header index of 1 user(s) loaded", run.StandardError, StringComparison.Ordinal);
        var restored = JsonDocument.Parse(run.StandardOutput).RootElement;
        Assert.Equal("restored", Assert.Single(restored.GetProperty("outcomes").EnumerateArray()).GetProperty("result").GetString());
        using (var imap = await store.LoginAsync("alice", "alicepw"))
        {
            await imap.Inbox.OpenAsync(FolderAccess.ReadOnly);
            var uid = Assert.Single(await imap.Inbox.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost)));
            var summary = Assert.Single(await imap.Inbox.FetchAsync([uid], MessageSummaryItems.Flags | MessageSummaryItems.InternalDate));
            Assert.Equal(MessageFlags.Seen | MessageFlags.Flagged, summary.Flags!.Value & ~MessageFlags.Recent);
            Assert.Contains("$Important", summary.Keywords);
            Assert.Equal(LostReceived, summary.InternalDate);
            await imap.DisconnectAsync(true);
        }

        var again = await RecoverAsync(server, restore);
        Assert.Equal("skipped-duplicate", Assert.Single(again.GetProperty("outcomes").EnumerateArray()).GetProperty("result").GetString());
        using (var imap = await store.LoginAsync("alice", "alicepw"))
        {
            await imap.Inbox.OpenAsync(FolderAccess.ReadOnly);
            Assert.Single(await imap.Inbox.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost)));
            await imap.DisconnectAsync(true);
        }

        // The newest snapshot before a date, an attachment filter, and a folder: exported as .eml.
        var exportDirectory = temp.Combine("eml");
        var before = DateTimeOffset.Now.AddHours(1).ToString("yyyy-MM-ddTHH:mm:sszzz", CultureInfo.InvariantCulture);
        var exported = await RecoverAsync(server, "mail", "--before", before, "--has-attachment", "--export", exportDirectory);
        var outcome = Assert.Single(exported.GetProperty("outcomes").EnumerateArray());
        Assert.Equal("restored", outcome.GetProperty("result").GetString());
        var eml = outcome.GetProperty("target").GetString()!;
        Assert.StartsWith(Path.Combine(exportDirectory, "alice", "Archive") + "/", eml, StringComparison.Ordinal);
        var exportedMessage = await MimeMessage.LoadAsync(eml);
        Assert.Equal("contract@legal.example.org", exportedMessage.MessageId);
        Assert.Equal("contract.pdf", Assert.Single(exportedMessage.Attachments).ContentDisposition?.FileName);

        // The same as one mbox per folder, then every run is on the server as an event under the token's name.
        var mboxDirectory = temp.Combine("mbox");
        var mboxed = await RecoverAsync(server, "mail@before", "--user", "alice", "--message-id", Lost, "--export", mboxDirectory, "--export-format", "mbox");
        var mbox = Assert.Single(mboxed.GetProperty("outcomes").EnumerateArray()).GetProperty("target").GetString()!;
        Assert.StartsWith("From ", await File.ReadAllTextAsync(mbox), StringComparison.Ordinal);

        // Mailed through a real Postfix, which hands it to the user's Dovecot over LMTP: IMAP as the
        // user finds the cover note with the original attached unchanged.
        PostfixInstance.Require();
        await using (var postfix = await PostfixInstance.StartAsync(temp.CreateDirectory("pf"), dovecot.LmtpPort))
        {
            var mailed = await RecoverAsync(server, "mail@before", "--user", "alice", "--message-id", "contract@legal.example.org", "--restore-to", "smtp", "--smtp", $"127.0.0.1:{postfix.SmtpPort}", "--smtp-tls", "none", "--send-to", "{user}@example.test");
            Assert.Equal("restored", Assert.Single(mailed.GetProperty("outcomes").EnumerateArray()).GetProperty("result").GetString());
            using var imap = await store.LoginAsync("alice", "alicepw");
            await imap.Inbox.OpenAsync(FolderAccess.ReadOnly);
            var cover = await WaitForAsync(imap, SearchQuery.SubjectContains("Recovered: Signed contract"), postfix);
            var delivered = await imap.Inbox.GetMessageAsync(cover);
            var original = Assert.Single(delivered.BodyParts.OfType<MessagePart>()).Message!;
            Assert.Equal("contract@legal.example.org", original.MessageId);
            Assert.Equal("contract.pdf", Assert.Single(original.Attachments).ContentDisposition?.FileName);
            await imap.DisconnectAsync(true);
        }

        var recoveries = (await client.ListEventsAsync()).Where(e => e.Kind == "recovery.mail").ToList();
        Assert.Contains(recoveries, e => e.Subject == "mail@before" && e.Message.Contains("imap ", StringComparison.Ordinal) && e.Message.Contains(Lost.Trim('<', '>'), StringComparison.Ordinal) && e.Message.Contains(": restored", StringComparison.Ordinal));
        Assert.Contains(recoveries, e => e.Message.Contains(": skipped-duplicate", StringComparison.Ordinal));
        Assert.Contains(recoveries, e => e.Message.Contains("(mbox)", StringComparison.Ordinal));
        Assert.All(recoveries, e => Assert.Equal("admin", e.Actor)); // the first token's name (TokenStore.FirstTokenName)

        // Every recovery took its view, export and mounts down again.
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));
        Assert.Equal(["mail"], (await client.ListExportsAsync()).Select(e => e.Name));
        Assert.DoesNotContain(_toolTemp + "/tidemark-recover-", await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal);
    }

    /// <summary>Postfix queues before it delivers: waits (up to a minute) for the INBOX to hold a match.</summary>
    private static async Task<UniqueId> WaitForAsync(ImapClient imap, SearchQuery query, PostfixInstance postfix)
    {
        for (var attempt = 0; attempt < 600; attempt++)
        {
            await imap.NoOpAsync();
            if ((await imap.Inbox.SearchAsync(query)).FirstOrDefault() is { IsValid: true } uid)
            {
                return uid;
            }

            await Task.Delay(100);
        }

        Assert.Fail($"Postfix did not deliver the recovered message within a minute; its log:\n{await File.ReadAllTextAsync(postfix.LogFile)}");
        return default;
    }

    private static MimeMessage Message(string messageId, string subject, string? attachment)
    {
        var body = new BodyBuilder { TextBody = $"{subject}: see the details.\n" };
        if (attachment is not null)
        {
            body.Attachments.Add(attachment, "%PDF-1.4 not really a PDF\n"u8.ToArray(), new ContentType("application", "pdf"));
        }

        return new MimeMessage(
            [new MailboxAddress("Finance", "finance@example.org")],
            [new MailboxAddress("Alice", "alice@example.test")],
            subject,
            body.ToMessageBody())
        {
            MessageId = messageId.Trim('<', '>'),
            Date = LostReceived.AddMinutes(-5),
        };
    }

    /// <summary>
    /// mdbox keeps flags, keywords and dates only in Dovecot's indexes: the recovery reads them through
    /// its own Dovecot over an overlay of the mounted view, and the restore is the same.
    /// </summary>
    [Fact]
    public async Task RecoverMail_Mdbox_FoundThroughPrivateDovecotRestoredWithFlagsThenSkipped()
    {
        using var temp = new TempDirectory();
        await using var store = await MailStoreVolume.StartAsync(temp, "mdbox", 256L << 20, "mdbox");
        var (server, client, live, dovecot) = (store.Server, store.Client, store.Live, store.Dovecot);
        for (var i = 0; i < 4; i++)
        {
            await dovecot.DeliverAsync($"sender{i}@example.org", "alice@example.test", $"From: sender{i}@example.org\nTo: alice@example.test\nSubject: delivered {i}\nMessage-ID: <mdbox-{i}@example.org>\n\nbody {i}\n");
        }

        using (var imap = await store.LoginAsync("alice", "alicepw"))
        {
            await imap.Inbox.AppendAsync(new AppendRequest(Message(Lost, "Quarterly figures Q3", null), MessageFlags.Answered | MessageFlags.Flagged, ["$Important"], LostReceived));
            await imap.DisconnectAsync(true);
        }

        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
        await client.CreateSnapshotAsync("mdbox", "before");
        await store.ExpungeAsync("alice", "alicepw", Lost);

        // The first search builds alice's mdbox header index of the snapshot (one FETCH per folder).
        var first = await RunRecoverAsync(server, "mdbox@before", "--user", "alice", "--from", "FINANCE@");
        Assert.True(first.ExitCode == 0, first.StandardError);
        Assert.Contains("indexed the headers of 5 message(s) of alice", first.StandardError, StringComparison.Ordinal);
        var found = JsonDocument.Parse(first.StandardOutput).RootElement;
        var match = Assert.Single(found.GetProperty("matches").EnumerateArray());
        Assert.Equal(Lost, match.GetProperty("messageId").GetString());
        Assert.Equal(LostReceived, match.GetProperty("internalDate").GetDateTimeOffset());
        Assert.Equal([@"\Answered", @"\Flagged"], match.GetProperty("flags").EnumerateArray().Select(f => f.GetString()).Order());
        Assert.Equal(["$Important"], match.GetProperty("keywords").EnumerateArray().Select(f => f.GetString()));

        // The next one loads the index and fetches only the candidate; indexed and full-scan results agree.
        var second = await RunRecoverAsync(server, "mdbox@before", "--user", "alice", "--from", "FINANCE@");
        Assert.Contains("header index of 1 user(s) loaded", second.StandardError, StringComparison.Ordinal);
        Assert.Contains("; 1 candidate message(s) fetched", second.StandardError, StringComparison.Ordinal);
        Assert.Equal(Matches(first), Matches(second));
        var indexed = await RunRecoverAsync(server, "mdbox@before", "--from", "example.org");
        var scanned = await RunRecoverAsync(server, "mdbox@before", "--from", "example.org", "--no-index");
        Assert.Equal(5, Matches(indexed).Count);
        Assert.Equal(Matches(scanned), Matches(indexed));

        // A corrupt index is reported, not used, and rebuilt.
        foreach (var file in Directory.GetFiles(_indexes, "*.idx", SearchOption.AllDirectories))
        {
            await File.WriteAllTextAsync(file, "not an index");
        }

        var rebuilt = await RunRecoverAsync(server, "mdbox@before", "--user", "alice", "--from", "FINANCE@");
        Assert.Contains("is not used: not an index file; rebuilding it", rebuilt.StandardError, StringComparison.Ordinal);
        Assert.Equal(Matches(first), Matches(rebuilt));

        var master = temp.Combine("master");
        await File.WriteAllTextAsync(master, $"{DovecotInstance.MasterUser}:{DovecotInstance.MasterPassword}\n");
        File.SetUnixFileMode(master, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        string[] restore = ["mdbox@before", "--user", "alice", "--message-id", Lost, "--restore-to", "imap", "--imap", $"127.0.0.1:{dovecot.ImapPort}", "--master-user-file", master, "--into"];
        var restored = await RecoverAsync(server, restore);
        var outcome = Assert.Single(restored.GetProperty("outcomes").EnumerateArray());
        Assert.Equal("restored", outcome.GetProperty("result").GetString());
        var recovered = outcome.GetProperty("target").GetString()!;
        Assert.StartsWith("Recovered/", recovered, StringComparison.Ordinal);
        using (var imap = await store.LoginAsync("alice", "alicepw"))
        {
            var folder = await imap.GetFolderAsync(recovered);
            await folder.OpenAsync(FolderAccess.ReadOnly);
            var uid = Assert.Single(await folder.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost)));
            var summary = Assert.Single(await folder.FetchAsync([uid], MessageSummaryItems.Flags | MessageSummaryItems.InternalDate));
            Assert.Equal(MessageFlags.Answered | MessageFlags.Flagged, summary.Flags!.Value & ~MessageFlags.Recent);
            Assert.Contains("$Important", summary.Keywords);
            Assert.Equal(LostReceived, summary.InternalDate);
            await imap.DisconnectAsync(true);
        }

        var again = await RecoverAsync(server, restore);
        Assert.Equal("skipped-duplicate", Assert.Single(again.GetProperty("outcomes").EnumerateArray()).GetProperty("result").GetString());
        Assert.Equal(["mdbox"], (await client.ListVolumesAsync()).Select(v => v.Name));
        Assert.DoesNotContain(_toolTemp + "/tidemark-recover-", await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("2", "mail@s --restore-to imap --imap 127.0.0.1:1 --master-user-file /nonexistent", "needs --user")]
    [InlineData("2", "mail@s --user alice --restore-to imap --imap host:99999 --master-user-file /nonexistent", "is not HOST:PORT")]
    [InlineData("2", "mail@s --user alice --restore-to imap --imap 127.0.0.1:143 --master-user-file /nonexistent", "does not exist")]
    [InlineData("2", "mail@s --user alice --restore-to imap --export /tmp/x --imap 127.0.0.1:143", "choose one of")]
    [InlineData("2", "mail@s --into Recovered", "only act with --restore-to")]
    [InlineData("2", "mail@s --restore-to smtp --send-to admin@example.com", "needs --smtp HOST:PORT")]
    [InlineData("2", "mail@s --restore-to smtp --smtp 127.0.0.1:25 --send-to nobody", "is not a mail address")]
    [InlineData("2", "mail@s --restore-to smtp --smtp 127.0.0.1:25 --send-to {user}@example.com --into X", "are for --restore-to imap")]
    [InlineData("2", "mail@s --export-format mbox", "needs --export DIR")]
    [InlineData("2", "mail --user alice", "add --before DATE")]
    [InlineData("2", "mail@s --since yesterday", "--since 'yesterday' is not a date")]
    [InlineData("2", "mail@s --restore-to pop3", "pop3")]
    public async Task RecoverMail_BadInput_Exit2BeforeTouchingAnyServer(string exitCode, string arguments, string message)
    {
        // Nothing listens on port 1: a command that got as far as a request would exit 3, not 2.
        var result = await ProcessRunner.RunAsync(TimeSpan.FromSeconds(60), "dotnet", [TidemarkBuild.DllPath, "recover", "mail", .. arguments.Split(' '), "--server", "http://127.0.0.1:1/", "--token", "t"]);

        Assert.True(result.ExitCode.ToString(CultureInfo.InvariantCulture) == exitCode, $"exit {result.ExitCode}\n{result.StandardError}");
        Assert.Contains(message, result.StandardError, StringComparison.Ordinal);
    }

    /// <summary>The snapshot of a mounted ext4 still says needs_recovery: the recovery must replay its journal.</summary>
    private static async Task AssertJournalNeedsReplayAsync(TidemarkClient client, TempDirectory temp)
    {
        await client.CreateViewAsync("mail@before", "probe");
        var export = await client.CreateExportAsync(new CreateExportRequest(Target: "probe", ReadOnly: true));
        await using (var probe = await AttachedExport.AttachAsync(export.Url!, temp.CreateDirectory("probe"), readOnly: true))
        {
            var header = await ProcessRunner.CheckAsync(AttachedExport.Tool("dumpe2fs"), "-h", probe.LoopDevice);
            Assert.Contains("needs_recovery", header.StandardOutput, StringComparison.Ordinal);
        }

        await client.DeleteExportAsync(export.Name);
        await client.DeleteVolumeAsync("probe");
    }

    /// <summary>What a run listed: each match's identity and the state the recovery would restore.</summary>
    private static List<string> Matches(ProcessResult run)
    {
        Assert.True(run.ExitCode == 0, run.StandardError);
        return [.. JsonDocument.Parse(run.StandardOutput).RootElement.GetProperty("matches").EnumerateArray()
            .Select(m => $"{m.GetProperty("user").GetString()}/{m.GetProperty("folder").GetString()} {m.GetProperty("messageId").GetString()} {m.GetProperty("internalDate").GetDateTimeOffset():O} {string.Join(' ', m.GetProperty("flags").EnumerateArray().Select(f => f.GetString()))}")];
    }

    /// <summary>Runs `tidemark recover mail ARGS --json` as the operator would and returns its JSON.</summary>
    private async Task<JsonElement> RecoverAsync(ServerProcess server, params string[] arguments)
    {
        var result = await RunRecoverAsync(server, arguments);
        Assert.True(result.ExitCode == 0, $"tidemark recover mail {string.Join(' ', arguments)} exited with {result.ExitCode}\n{result.StandardOutput}\n{result.StandardError}");
        return JsonDocument.Parse(result.StandardOutput).RootElement;
    }

    private async Task<ProcessResult> RunRecoverAsync(ServerProcess server, params string[] arguments)
    {
        var result = await ProcessRunner.RunWithEnvironmentAsync(
            TimeSpan.FromSeconds(180),
            new Dictionary<string, string?>
            {
                ["TMPDIR"] = _privateTemp,
                [MailRecovery.WorkRootEnvironmentVariable] = _toolTemp,
                [MailIndexCache.EnvironmentVariable] = _indexes,
            },
            "dotnet",
            [TidemarkBuild.DllPath, "recover", "mail", .. arguments, "--json", "--server", server.Http.ToString(), "--token", server.Token]);

        // What the operator sees on stderr (steps and their times), for a reader of the test log.
        output.WriteLine($"$ tidemark recover mail {string.Join(' ', arguments)} -> exit {result.ExitCode}\n{result.StandardError}");
        return result;
    }
}
