using System.Diagnostics;
using MimeKit;
using Tidemark.Agent;
using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;

namespace Tidemark.Interop.Tests;

/// <summary>
/// The agent's mail plugin with Debian's Postfix and Dovecot (ADR 0015): Postfix takes mail over SMTP
/// and hands it to Dovecot over LMTP, which keeps Maildirs on ext4 on a Tidemark volume. A quiesce
/// holds delivery (Postfix's queue manager stopped, the mail waits in its queue), and the agent
/// resumes by itself at its deadline when the server never calls back. Snapshots taken through the
/// agent while messages stream in are application-consistent, every message file in their views is
/// whole, Dovecot opens every mailbox of each (the agent's verification), also with the index run
/// before each hold cut at its bound, and after the last resume every message sent is delivered
/// exactly once.
/// </summary>
public sealed class AgentMailTests
{
    private const long VolumeBytes = 1L << 30;
    private const int Streamed = 120;
    private const int Snapshots = 3;

    [Fact]
    public async Task MailPlugin_HoldsDeliveryResumesAtDeadline_SnapshotsUnderSmtpStreamAreWholeAndOpen_NothingLost()
    {
        HostRequirements.RequireFileSystemStack();
        await DovecotInstance.RequireAsync();
        PostfixInstance.Require();
        using var temp = new TempDirectory();
        await using var mail = await Ext4Volume.StartAsync(temp, "mail", VolumeBytes, storeCapacity: "4G");
        var (server, client, live) = (mail.Server, mail.Client, mail.Live);
        var dovecotDirectory = temp.CreateDirectory("dc");
        await using var dovecot = await DovecotInstance.StartAsync(dovecotDirectory, live.MountPoint);
        await using var postfix = await PostfixInstance.StartAsync(temp.CreateDirectory("pf"), dovecot.LmtpPort);
        var identity = await client.GetIdentityAsync();
        // The index run before each hold is cut at once (doveadm started and killed): the run inside the hold must do without it.
        var store = $"root={live.MountPoint},postfix={postfix.ConfigDirectory},dovecot={Path.Combine(dovecotDirectory, "dovecot.conf")},index-before-hold=0.001";
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 10, [(live.MountPoint, "mail")], mail: [store]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        await postfix.SendAsync("sender@example.org", "alice@example.test", Message("first", "alice"));
        await WaitDeliveredAsync(live.MountPoint, 1, postfix);

        // Play a server that quiesces and then never calls back: delivery is held, then resumes by itself.
        using var asServer = agent.ClientAsServer(server.DataDirectory);
        var quiesce = await AgentProcess.ReadAsync<QuiesceResultDto>(await AgentProcess.PostAsync(asServer, "quiesce", new QuiesceRequest(["mail"])));
        var heldAt = Stopwatch.StartNew();
        await postfix.SendAsync("sender@example.org", "bob@example.test", Message("held", "bob"));
        await Task.Delay(TimeSpan.FromSeconds(2));
        var queueWhileHeld = await postfix.QueueAsync();
        var deliveredWhileHeld = Delivered(live.MountPoint).Count;
        var qmgrWhileHeld = postfix.QueueManagerState();
        Assert.True(heldAt.Elapsed < TimeSpan.FromSeconds(quiesce.DeadlineSeconds), "the checks while held ran before the deadline");
        await WaitDeliveredAsync(live.MountPoint, 2, postfix);
        var status = await AgentProcess.ReadAsync<AgentStatusDto>(await asServer.GetAsync("status"));
        var qmgrAfterDeadline = postfix.QueueManagerState();

        Assert.Contains("mail: postfix+dovecot", quiesce.Quiesced);
        Assert.Equal("application", quiesce.Consistency);
        Assert.Equal(1, deliveredWhileHeld);
        Assert.Contains("bob@example.test", queueWhileHeld, StringComparison.Ordinal);
        Assert.Equal(ProcStat.Stopped, qmgrWhileHeld);
        Assert.Equal("expired", status.LastSession?.State);
        Assert.NotEqual(ProcStat.Stopped, qmgrAfterDeadline);
        Assert.Contains("doveadm index before the hold did not finish within 0.001 s", agent.Log, StringComparison.Ordinal);

        // Snapshots through the agent while a sender streams mail over SMTP.
        var sender = Task.Run(async () =>
        {
            for (var i = 0; i < Streamed; i++)
            {
                await postfix.SendAsync("sender@example.org", $"{(i % 2 == 0 ? "alice" : "bob")}@example.test", Message($"stream-{i:D4}", i % 2 == 0 ? "alice" : "bob"));
                await Task.Delay(25);
            }
        });
        var taken = new List<SnapshotDto>();
        for (var s = 0; s < Snapshots; s++)
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            taken.Add(await client.CreateSnapshotAsync("mail", new CreateSnapshotRequest($"s{s}", ["app"])));
        }

        await sender.WaitAsync(TimeSpan.FromMinutes(5));
        await WaitDeliveredAsync(live.MountPoint, Streamed + 2, postfix);
        var delivered = Delivered(live.MountPoint);

        var views = new List<(string Name, List<string> Problems, int Messages, SnapshotVerificationDto? Verification)>();
        foreach (var snapshot in taken)
        {
            var verified = await client.VerifySnapshotAsync($"mail@{snapshot.Name}", new VerifySnapshotRequest("app"));
            var (problems, messages) = await InspectViewAsync(client, temp, $"mail@{snapshot.Name}", $"view-{snapshot.Name}");
            views.Add((snapshot.Name, problems, messages, verified.Verification));
        }

        Assert.All(taken, t => Assert.StartsWith($"application (app: mail: postfix+dovecot, {live.MountPoint} (ext4))", t.Consistency, StringComparison.Ordinal));
        Assert.Equal(Streamed + 2, delivered.Count);
        Assert.Equal(delivered.Count, delivered.Distinct(StringComparer.Ordinal).Count());
        foreach (var (name, problems, messages, verification) in views)
        {
            Assert.True(problems.Count == 0, $"{name}: {string.Join("; ", problems)}");
            Assert.InRange(messages, 2, Streamed + 2);
            Assert.True(verification?.Verdict == VerifyResultDto.Passed, $"{name} verification: {verification?.Summary}");
            Assert.Contains(verification!.Checks, c => c.StartsWith("mail store mail: Dovecot opened", StringComparison.Ordinal) && c.EndsWith($" {messages} messages", StringComparison.Ordinal));
        }
    }

    /// <summary>
    /// An agent killed with -9 during a hold leaves Postfix's queue manager stopped (and the mail file
    /// system frozen); its next start finds its journal, continues the queue manager and thaws the
    /// mount: the message that waited is delivered, and the server hears of it as agent.recovery
    /// events at the next snapshot.
    /// </summary>
    [Fact]
    public async Task AgentKilledDuringHold_NextStartContinuesQmgrThawsAndDeliversTheQueuedMessage()
    {
        HostRequirements.RequireFileSystemStack();
        await DovecotInstance.RequireAsync();
        PostfixInstance.Require();
        using var temp = new TempDirectory();
        await using var mail = await Ext4Volume.StartAsync(temp, "mail", VolumeBytes, storeCapacity: "4G");
        var (client, live) = (mail.Client, mail.Live);
        var dovecotDirectory = temp.CreateDirectory("dc");
        await using var dovecot = await DovecotInstance.StartAsync(dovecotDirectory, live.MountPoint);
        await using var postfix = await PostfixInstance.StartAsync(temp.CreateDirectory("pf"), dovecot.LmtpPort);
        var identity = await client.GetIdentityAsync();
        var store = $"root={live.MountPoint},postfix={postfix.ConfigDirectory},dovecot={Path.Combine(dovecotDirectory, "dovecot.conf")}";
        var agentDirectory = temp.Combine("agent");
        var agent = await AgentProcess.StartAsync(agentDirectory, identity.Fingerprint, deadlineSeconds: 60, [(live.MountPoint, "mail")], mail: [store], listen: $"127.0.0.1:{FreePort.Find()}");
        try
        {
            await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));
            await postfix.SendAsync("sender@example.org", "alice@example.test", Message("first", "alice"));
            await WaitDeliveredAsync(live.MountPoint, 1, postfix);
            var before = await PostconfAsync(postfix, "-n", "defer_transports");

            using (var asServer = agent.ClientAsServer(mail.Server.DataDirectory))
            {
                await AgentProcess.ReadAsync<QuiesceResultDto>(await AgentProcess.PostAsync(asServer, "quiesce", new QuiesceRequest(["mail"])));
            }

            await postfix.SendAsync("sender@example.org", "bob@example.test", Message("held", "bob"));
            await agent.KillAsync();
            await Task.Delay(TimeSpan.FromSeconds(2));
            var leftBehind = postfix.QueueManagerState();
            var queueLeft = await postfix.QueueAsync();
            var deliveredLeft = Delivered(live.MountPoint).Count;

            await agent.DisposeAsync();
            agent = await AgentProcess.RunAsync(agentDirectory);
            var after = postfix.QueueManagerState();
            await WaitDeliveredAsync(live.MountPoint, 2, postfix);
            using var asServerAgain = agent.ClientAsServer(mail.Server.DataDirectory);
            var status = await AgentProcess.ReadAsync<AgentStatusDto>(await asServerAgain.GetAsync("status"));
            var snapshot = await client.CreateSnapshotAsync("mail", new CreateSnapshotRequest("after-restart", ["app"]));
            var events = await client.ListEventsAsync(kind: "agent.recovery");

            Assert.Equal("", before);
            Assert.Equal(ProcStat.Stopped, leftBehind);
            Assert.Contains("bob@example.test", queueLeft, StringComparison.Ordinal);
            Assert.Equal(1, deliveredLeft);
            Assert.NotEqual(ProcStat.Stopped, after);
            Assert.Equal("", await PostconfAsync(postfix, "-n", "defer_transports"));
            Assert.Contains(status.Recovered!, r => r.Kind == "postfix-qmgr" && r.Settled && r.Message.Contains("its queue manager (pid ", StringComparison.Ordinal) && r.Message.EndsWith(") continued", StringComparison.Ordinal));
            Assert.Contains(status.Recovered!, r => r.Kind == "freeze" && r.Settled && r.Message.StartsWith($"{live.MountPoint}: thawed", StringComparison.Ordinal));
            Assert.StartsWith("application (app: mail: postfix+dovecot", snapshot.Consistency, StringComparison.Ordinal);
            Assert.Contains(events, e => e.Subject == "app" && e.Outcome == "ok" && e.Message.StartsWith("postfix-qmgr: ", StringComparison.Ordinal));
            Assert.Empty(Directory.GetFiles(Path.Combine(agentDirectory, "journal"), "*.json"));
            Assert.Equal(2, Delivered(live.MountPoint).Count);
        }
        finally
        {
            await agent.DisposeAsync();

            // Whatever failed above, the live mount must not stay frozen for the clean-up (umount would hang).
            await ProcessRunner.RunAsync(AttachedExport.Tool("fsfreeze"), "-u", live.MountPoint);
        }
    }

    /// <summary>
    /// An mdbox store (many messages per storage file, flags only in Dovecot's indexes): a snapshot
    /// through the agent passes verification with every message opened; one whose storage file was
    /// cut short fails with Dovecot's reason. A damaged m.N does not make `doveadm force-resync` fail
    /// (it rebuilds without the lost message and exits 0), so the check reads its errors too.
    /// </summary>
    [Fact]
    public async Task Verify_MdboxStore_PassesWhole_FailsWithDamagedStorageFile()
    {
        HostRequirements.RequireFileSystemStack();
        await DovecotInstance.RequireAsync();
        using var temp = new TempDirectory();
        await using var mail = await Ext4Volume.StartAsync(temp, "mail", 256L << 20, storeCapacity: "1G");
        var (client, live) = (mail.Client, mail.Live);
        var dovecotDirectory = temp.CreateDirectory("dc");
        await using var dovecot = await DovecotInstance.StartAsync(dovecotDirectory, live.MountPoint, "mdbox");
        for (var i = 0; i < 6; i++)
        {
            await dovecot.DeliverAsync("sender@example.org", "alice@example.test", Message($"mdbox-{i}", "alice"));
        }

        var identity = await client.GetIdentityAsync();
        var store = $"root={live.MountPoint},dovecot={Path.Combine(dovecotDirectory, "dovecot.conf")},format=mdbox";
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 30, [(live.MountPoint, "mail")], mail: [store]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        var good = await client.CreateSnapshotAsync("mail", new CreateSnapshotRequest("good", ["app"]));
        var passed = await client.VerifySnapshotAsync("mail@good", new VerifySnapshotRequest("app"));

        // Damage the storage file: cut it short in the third message, as a lost write at the end of a file would.
        var storage = Path.Combine(live.MountPoint, "alice", "mdbox", "storage", "m.1");
        var bytes = await File.ReadAllBytesAsync(storage);
        var at = bytes.AsSpan().IndexOf("Subject: mdbox-3"u8);
        Assert.True(at > 300, $"the third message is in {storage}");
        await using (var file = new FileStream(storage, FileMode.Open, FileAccess.Write))
        {
            file.SetLength(at);
        }

        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", storage);
        await client.CreateSnapshotAsync("mail", "damaged");
        var failed = await client.VerifySnapshotAsync("mail@damaged", new VerifySnapshotRequest("app"));

        Assert.StartsWith($"application (app: mail: dovecot, {live.MountPoint} (ext4))", good.Consistency, StringComparison.Ordinal);
        Assert.True(passed.Verification?.Verdict == VerifyResultDto.Passed, $"verification of the whole store: {passed.Verification?.Summary}");
        Assert.Contains(passed.Verification!.Checks, c => c.StartsWith("mail store mail: Dovecot opened", StringComparison.Ordinal) && c.EndsWith(" 6 messages", StringComparison.Ordinal));
        Assert.True(failed.Verification?.Verdict == VerifyResultDto.Failed, $"verification of the damaged store: {failed.Verification?.Summary}");
        Assert.Contains("mail store mail: Dovecot found damage opening the mailboxes of alice", failed.Verification!.Reason, StringComparison.Ordinal);
        Assert.Contains("Corrupted dbox file", failed.Verification.Reason, StringComparison.Ordinal);
    }

    private static async Task<string> PostconfAsync(PostfixInstance postfix, params string[] arguments) =>
        (await ProcessRunner.CheckAsync("/usr/sbin/postconf", ["-c", postfix.ConfigDirectory, .. arguments])).StandardOutput.Trim();

    /// <summary>A message whose last body line says it is whole: a file cut short lacks it.</summary>
    private static string Message(string id, string user) =>
        $"From: Sender <sender@example.org>\nTo: {user}@example.test\nSubject: {id}\nMessage-ID: <{id}@example.org>\n\n{string.Join('\n', Enumerable.Range(0, 40).Select(i => $"line {i} of {id} ................................................"))}\nEND {id}\n";

    /// <summary>The Message-IDs of the messages Dovecot has stored (cur/ and new/ of every Maildir under the root).</summary>
    private static List<string> Delivered(string root) =>
        [.. MessageFiles(root).Select(f => MimeMessage.Load(f).MessageId ?? f)];

    private static IEnumerable<string> MessageFiles(string root) =>
        Directory.EnumerateDirectories(root)
            .Select(home => Path.Combine(home, "Maildir"))
            .Where(Directory.Exists)
            .SelectMany(maildir => ((string[])["cur", "new"]).Select(d => Path.Combine(maildir, d)))
            .Where(Directory.Exists)
            .SelectMany(Directory.EnumerateFiles);

    private static async Task WaitDeliveredAsync(string root, int count, PostfixInstance postfix)
    {
        var waited = Stopwatch.StartNew();
        while (Delivered(root).Count < count)
        {
            if (waited.Elapsed > TimeSpan.FromMinutes(2))
            {
                Assert.Fail($"{Delivered(root).Count} of {count} messages delivered after two minutes; queue:\n{await postfix.QueueAsync()}\nlog:\n{(File.Exists(postfix.LogFile) ? string.Join('\n', File.ReadLines(postfix.LogFile).TakeLast(20)) : "")}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>Mounts a view of the snapshot read-only and checks every message file in it parses and ends as it was sent.</summary>
    private static async Task<(List<string> Problems, int Messages)> InspectViewAsync(TidemarkClient client, TempDirectory temp, string snapshot, string view)
    {
        await client.CreateViewAsync(snapshot, view);
        var export = await client.CreateExportAsync(new CreateExportRequest(Target: view, ReadOnly: true));
        await using var attached = await AttachedExport.AttachAsync(export.Url!, temp.CreateDirectory(view), readOnly: true);
        await attached.MountAsync("ro");
        var problems = new List<string>();
        var messages = 0;
        foreach (var file in MessageFiles(attached.MountPoint))
        {
            messages++;
            var parsed = MimeMessage.Load(file);
            var id = parsed.MessageId?.Split('@')[0];
            if (id is null || !(parsed.TextBody ?? "").TrimEnd().EndsWith($"END {id}", StringComparison.Ordinal))
            {
                problems.Add($"{Path.GetFileName(file)} is not a whole message ({new FileInfo(file).Length} bytes)");
            }
        }

        await ProcessRunner.CheckAsync(AttachedExport.Tool("umount"), attached.MountPoint);
        return (problems, messages);
    }
}
