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
/// Issue 23's REST part: `tidemark recover mail ... --host app` runs the recovery as a job of the
/// server on a real agent (the recovery host), with a real Dovecot as production. The agent reads the
/// master user from its own directory (a missing file fails the job, names the file, and still takes
/// the view down); the job's result lists what matched and what was restored; each run is a
/// `recovery.mail` event naming the host; nothing of the recovery is left on the server or the host.
/// </summary>
public sealed class MailRecoveryJobTests(ITestOutputHelper output)
{
    private const string Lost = "<invoice-4711@supplier.example.org>";
    private static readonly DateTimeOffset LostReceived = new(2026, 11, 12, 7, 30, 0, TimeSpan.Zero);

    [Fact]
    public async Task RecoverMail_OnAgentHost_AsServerJob_RestoresWithFlags_CredentialsFromHostFile_ViewAlwaysDeleted()
    {
        using var temp = new TempDirectory();
        await using var store = await MailStoreVolume.StartAsync(temp, "mail", 256L << 20);
        var (server, client, live, dovecot) = (store.Server, store.Client, store.Live, store.Dovecot);
        for (var i = 0; i < 3; i++)
        {
            await dovecot.DeliverAsync($"sender{i}@example.org", "alice@example.test", $"From: sender{i}@example.org\nTo: alice@example.test\nSubject: delivered {i}\nMessage-ID: <job-{i}@example.org>\n\nbody {i}\n");
        }

        var lost = new MimeMessage(
            [new MailboxAddress("Supplier", "billing@supplier.example.org")],
            [new MailboxAddress("Alice", "alice@example.test")],
            "Invoice 4711",
            new TextPart("plain") { Text = "Please pay.\n" })
        {
            MessageId = Lost.Trim('<', '>'),
        };
        await store.AppendAsync("alice", "alicepw", lost, MessageFlags.Seen | MessageFlags.Answered, ["$Invoice"], LostReceived);

        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
        await client.CreateSnapshotAsync("mail", "before");
        await store.ExpungeAsync("alice", "alicepw", Lost);

        var identity = await client.GetIdentityAsync();
        var agentDirectory = temp.Combine("agent");
        await using var agent = await AgentProcess.StartAsync(agentDirectory, identity.Fingerprint, deadlineSeconds: 10, []);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));
        string[] restore = ["mail@before", "--user", "alice", "--message-id", Lost, "--restore-to", "imap", "--imap", $"127.0.0.1:{dovecot.ImapPort}", "--imap-tls", "none", "--host", "app"];

        // No master user file on the host yet: the job fails naming it, and the view is gone.
        var missing = await RunRecoverAsync(server, restore);
        Assert.True(missing.ExitCode == 1, $"exit {missing.ExitCode}\n{missing.StandardError}");
        Assert.Contains("imap-master", missing.StandardError, StringComparison.Ordinal);
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));

        // Credentials are never options with --host.
        var refused = await RunRecoverAsync(server, [.. restore, "--master-user-file", temp.Combine("nowhere")]);
        Assert.True(refused.ExitCode == 2, $"exit {refused.ExitCode}\n{refused.StandardError}");

        var master = Path.Combine(agentDirectory, "imap-master");
        await File.WriteAllTextAsync(master, $"{DovecotInstance.MasterUser}:{DovecotInstance.MasterPassword}\n");
        File.SetUnixFileMode(master, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var restoreRun = await RunRecoverAsync(server, restore);
        Assert.True(restoreRun.ExitCode == 0, $"exit {restoreRun.ExitCode}\n{restoreRun.StandardError}");
        var restored = JsonDocument.Parse(restoreRun.StandardOutput).RootElement;
        var outcome = Assert.Single(restored.GetProperty("outcomes").EnumerateArray());

        // Where the seconds went (issue 23): the server's and the agent's steps, and a line on stderr.
        // The job answered once the message was in the mailbox, before the agent's teardown, which
        // therefore is not among its steps (the clean-up follows, checked at the end).
        var steps = restored.GetProperty("steps").EnumerateArray().Select(s => (s.GetProperty("where").GetString(), s.GetProperty("step").GetString())).ToList();
        Assert.Superset(
            new HashSet<(string?, string?)> { ("server", "view + export"), ("server", "agent call"), ("agent", "attach (nbdfuse + loop)"), ("agent", "mount (incl. journal replay)"), ("agent", "search"), ("agent", "imap connect + login"), ("agent", "imap open + duplicate check + append"), ("agent", "deliver") },
            steps.ToHashSet());
        Assert.DoesNotContain(steps, s => s.Item2 == "teardown");
        Assert.Contains("timings: cli start ", restoreRun.StandardError, StringComparison.Ordinal);
        Assert.Contains("agent: attach (nbdfuse + loop) ", restoreRun.StandardError, StringComparison.Ordinal);
        Assert.Equal("restored", outcome.GetProperty("result").GetString());
        Assert.Equal("app", restored.GetProperty("host").GetString());
        using (var imap = await store.LoginAsync("alice", "alicepw"))
        {
            await imap.Inbox.OpenAsync(FolderAccess.ReadOnly);
            var uid = Assert.Single(await imap.Inbox.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost)));
            var summary = Assert.Single(await imap.Inbox.FetchAsync([uid], MessageSummaryItems.Flags | MessageSummaryItems.InternalDate));
            Assert.Equal(MessageFlags.Seen | MessageFlags.Answered, summary.Flags!.Value & ~MessageFlags.Recent);
            Assert.Contains("$Invoice", summary.Keywords);
            Assert.Equal(LostReceived, summary.InternalDate);
            await imap.DisconnectAsync(true);
        }

        // Through the API directly: the newest snapshot before a date, a dry run by sender; an export by name on the host.
        var listed = await client.RecoverMailAsync(new MailRecoveryJobRequest("app", Volume: "mail", Before: DateTimeOffset.UtcNow.AddMinutes(5), Filter: new MailFilterDto(From: "SUPPLIER.example")));
        Assert.Equal("mail@before", listed.Snapshot);
        Assert.Equal(Lost, Assert.Single(listed.Matches).MessageId);
        Assert.Empty(listed.Outcomes);
        var exported = await RecoverAsync(server, "mail@before", "--message-id", Lost, "--export", "hold-4711", "--host", "app");
        var eml = Assert.Single(exported.GetProperty("outcomes").EnumerateArray()).GetProperty("target").GetString()!;
        Assert.StartsWith(Path.Combine(agentDirectory, "recovered", "hold-4711") + "/", eml, StringComparison.Ordinal);
        Assert.Equal(Lost.Trim('<', '>'), (await MimeMessage.LoadAsync(eml)).MessageId);

        // The server named the snapshot's identity, so the agent kept a header index of it (0600).
        var indexes = Directory.GetFiles(Path.Combine(agentDirectory, MailRecoveryJob.IndexDirectoryName), "*.idx", SearchOption.AllDirectories);
        Assert.NotEmpty(indexes);
        Assert.All(indexes, index => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(index)));
        var badName = await Assert.ThrowsAsync<TidemarkApiException>(() => client.RecoverMailAsync(new MailRecoveryJobRequest("app", Snapshot: "mail@before", Target: new MailTargetDto(MailTargetDto.Export, ExportName: "../etc"))));
        Assert.Contains("export name", badName.Message, StringComparison.Ordinal);

        // Every run is an event naming the host; each left nothing behind. A run that answered before
        // its clean-up records its event once the view is deleted: wait for that, not for a time.
        await EventuallyAsync(async () => (await client.ListVolumesAsync()).Count == 1 && (await client.ListEventsAsync()).Count(e => e.Kind == "recovery.mail") == 4);
        var jobs = (await client.ListJobsAsync()).Where(j => j.Kind == "recovery.mail").ToList();
        Assert.Contains(jobs, j => j.State == "failed" && j.Error!.Contains("imap-master", StringComparison.Ordinal));
        Assert.Equal(3, jobs.Count(j => j.State == "succeeded"));
        var events = (await client.ListEventsAsync()).Where(e => e.Kind == "recovery.mail").ToList();
        Assert.Contains(events, e => e.Outcome == "failed" && e.Message.Contains("on host app", StringComparison.Ordinal) && e.Message.Contains("imap-master", StringComparison.Ordinal));
        Assert.Contains(events, e => e.Outcome == "ok" && e.Subject == "mail@before" && e.Message.Contains(": restored", StringComparison.Ordinal));
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));
        Assert.Equal(["mail"], (await client.ListExportsAsync()).Select(e => e.Name));
        Assert.DoesNotContain("tidemark-recover-", await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal);
    }

    /// <summary>
    /// A cancel reaches the agent mid-recovery (here while it waits for an IMAP server that accepted
    /// the connection and never greets): the agent stops and unmounts, then the server deletes the
    /// export and the view; the job ends cancelled and the event says so.
    /// </summary>
    [Fact]
    public async Task RecoverMail_JobCancelledWhileRestoring_AgentUnmountsAndViewDeleted()
    {
        HostRequirements.RequireFileSystemStack();
        await DovecotInstance.RequireAsync();
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"), "--store-capacity", "2G");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 128L << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest(Target: "mail"));
        await using (var live = await AttachedExport.AttachAsync(export.Url!, temp.CreateDirectory("live"), readOnly: false))
        {
            await live.FormatExt4Async();
            await live.MountAsync("rw");
            var cur = Directory.CreateDirectory(Path.Combine(live.MountPoint, "alice", "Maildir", "cur")).FullName;
            await File.WriteAllTextAsync(Path.Combine(cur, "1795534881.M1P1.vm:2,S"), $"From: a@example.org\nMessage-ID: {Lost}\nSubject: s\n\nbody\n");
            await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
        }

        await client.DeleteExportAsync(export.Name);
        await client.CreateSnapshotAsync("mail", "before");
        var identity = await client.GetIdentityAsync();
        var agentDirectory = temp.Combine("agent");
        await using var agent = await AgentProcess.StartAsync(agentDirectory, identity.Fingerprint, deadlineSeconds: 10, []);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));
        var master = Path.Combine(agentDirectory, "imap-master");
        await File.WriteAllTextAsync(master, "admin:adminpw\n");
        File.SetUnixFileMode(master, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        // An IMAP server that accepts and never says a word: the recovery waits there until cancelled.
        using var silent = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        silent.Start();
        var port = ((System.Net.IPEndPoint)silent.LocalEndpoint).Port;
        var recovery = client.RecoverMailAsync(new MailRecoveryJobRequest("app", Snapshot: "mail@before", Filter: new MailFilterDto(["alice"]), Target: new MailTargetDto(MailTargetDto.Imap, $"127.0.0.1:{port}", "none")));
        using var accepted = await silent.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromSeconds(120));
        var job = Assert.Single(await client.ListJobsAsync(), j => j.Kind == "recovery.mail" && j.State == "running");
        Assert.Contains(await client.ListVolumesAsync(), v => v.Name.StartsWith("recover-mail-", StringComparison.Ordinal));
        await client.CancelJobAsync(job.Id);

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => recovery);
        Assert.True(error.Code == "cancelled", $"{error.Code}: {error.Message}");
        Assert.Equal("cancelled", (await client.GetJobAsync(job.Id)).State);
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));
        Assert.Empty(await client.ListExportsAsync());
        Assert.Contains(await client.ListEventsAsync(), e => e.Kind == "recovery.mail" && e.Outcome == "failed" && e.Message.Contains("cancelled", StringComparison.Ordinal));
        Assert.DoesNotContain("tidemark-recover-", await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal);
    }

    private static async Task EventuallyAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the recoveries' clean-up did not end within 2 minutes");
            await Task.Delay(100);
        }
    }

    private async Task<JsonElement> RecoverAsync(ServerProcess server, params string[] arguments)
    {
        var result = await RunRecoverAsync(server, arguments);
        Assert.True(result.ExitCode == 0, $"tidemark recover mail {string.Join(' ', arguments)} exited with {result.ExitCode}\n{result.StandardOutput}\n{result.StandardError}");
        return JsonDocument.Parse(result.StandardOutput).RootElement;
    }

    private async Task<ProcessResult> RunRecoverAsync(ServerProcess server, params string[] arguments)
    {
        var result = await ProcessRunner.RunAsync(
            TimeSpan.FromSeconds(180),
            "dotnet",
            [TidemarkBuild.DllPath, "recover", "mail", .. arguments, "--json", "--server", server.Http.ToString(), "--token", server.Token]);
        output.WriteLine($"$ tidemark recover mail {string.Join(' ', arguments)} -> exit {result.ExitCode}\n{result.StandardError}");
        return result;
    }
}
