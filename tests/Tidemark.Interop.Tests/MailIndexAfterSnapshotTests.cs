using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;
using Tidemark.Recovery.Mail;
using Xunit.Abstractions;

namespace Tidemark.Interop.Tests;

/// <summary>
/// Issue 23's first-search goal (docs/adr/0012, "Index after a snapshot"): a policy snapshot of a real
/// Dovecot Maildir store, taken through the agent that declares the store, is indexed by that agent in
/// the background as a <c>mail.index</c> job, without any search; the first recovery search of the
/// snapshot then loads the index instead of reading every header. A build that fails (a store whose
/// volume holds no file system) fails as a job with an event, and leaves no view, export or mount.
/// </summary>
public sealed class MailIndexAfterSnapshotTests(ITestOutputHelper output)
{
    [Fact]
    public async Task PolicySnapshot_OfDeclaredMailStore_IndexedInBackground_FirstSearchUsesIndex_FailedBuildLeavesNothing()
    {
        using var temp = new TempDirectory();
        await using var store = await MailStoreVolume.StartAsync(temp, "mail", 256L << 20);
        var (client, live, dovecot) = (store.Client, store.Live, store.Dovecot);
        for (var i = 0; i < 4; i++)
        {
            var user = i % 2 == 0 ? "alice" : "bob";
            await dovecot.DeliverAsync($"sender{i}@example.org", $"{user}@example.test", $"From: sender{i}@example.org\nTo: {user}@example.test\nSubject: delivered {i}\nMessage-ID: <index-{i}@example.org>\n\nbody {i}\n");
        }

        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);

        // A second declared store on a volume without a file system: its build must fail cleanly.
        await client.CreateVolumeAsync(new CreateVolumeRequest("blank", 64L << 20));
        var conf = Path.Combine(temp.Combine("dc"), "dovecot.conf");
        var identity = await client.GetIdentityAsync();
        var agentDirectory = temp.Combine("agent");
        await using var agent = await AgentProcess.StartAsync(
            agentDirectory,
            identity.Fingerprint,
            deadlineSeconds: 10,
            [(live.MountPoint, "mail"), (temp.CreateDirectory("blank-mount"), "blank")],
            mail: [$"root={live.MountPoint},dovecot={conf}", $"root={temp.Combine("blank-mount")},dovecot={conf},name=blank"]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        // The policy's snapshot goes through the agent; nothing searches it.
        await client.CreatePolicyAsync(new PolicyRequest("nightly", Volume: "mail", Schedule: "daily 02:30", Hosts: ["app"], Verify: false));
        var policy = await client.RunPolicyAsync("nightly");
        var address = $"mail@{Assert.Single(policy.Snapshots)}";
        var built = await WaitForJobAsync(client, "mail.index", address);
        output.WriteLine(agent.Log);
        Assert.True(built.State == "succeeded", $"{built.State}: {built.Error}");
        var indexes = Directory.GetFiles(Path.Combine(agentDirectory, MailRecoveryJob.IndexDirectoryName), "*.idx", SearchOption.AllDirectories);
        Assert.Equal(2, indexes.Length);
        Assert.Contains(await client.ListEventsAsync(kind: "mail.index"), e => e.Subject == address && e.Outcome == "ok" && e.Message.Contains("2 user(s), 4 message(s)", StringComparison.Ordinal));

        // The first search of the snapshot is already indexed: it loads both users' indexes and reads no header to build one.
        var logBefore = agent.Log.Length;
        var found = await client.RecoverMailAsync(new MailRecoveryJobRequest("app", Snapshot: address, Filter: new MailFilterDto(From: "SENDER3@example.org")));
        Assert.Equal("<index-3@example.org>", Assert.Single(found.Matches).MessageId);
        var searchLog = agent.Log[logBefore..];
        Assert.Contains("header index of 2 user(s) loaded", searchLog, StringComparison.Ordinal);
        Assert.DoesNotContain("indexing the headers", searchLog, StringComparison.Ordinal);

        // The recovery job answered before its clean-up: its view goes right after.
        var cleaned = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while ((await client.ListVolumesAsync()).Any(v => v.Name.StartsWith("recover-", StringComparison.Ordinal)))
        {
            Assert.True(DateTime.UtcNow < cleaned, "the recovery's view was not deleted within 2 minutes");
            await Task.Delay(100);
        }

        // A store whose volume has no file system: the build fails as a job, with an event, and cleans up.
        var blank = await client.CreateSnapshotAsync("blank", new CreateSnapshotRequest("b1", ["app"], "crash"));
        var failed = await WaitForJobAsync(client, "mail.index", blank.Address);
        Assert.Equal("failed", failed.State);
        Assert.Contains(await client.ListEventsAsync(kind: "mail.index"), e => e.Subject == blank.Address && e.Outcome == "failed" && e.Message.Contains("on host app", StringComparison.Ordinal));
        Assert.Equal(["blank", "mail"], (await client.ListVolumesAsync()).Select(v => v.Name).Order(StringComparer.Ordinal));
        Assert.Equal(["mail"], (await client.ListExportsAsync()).Select(e => e.Name));
        Assert.DoesNotContain("tidemark-recover-", await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal);
    }

    /// <summary>
    /// A build cancelled through the jobs API (issue 23) stops on the agent, which takes its mounts
    /// down; the server deletes the view and the export, the job ends cancelled with a mail.index event
    /// saying so, and no user's index is kept: a cancelled build is never taken for a complete one.
    /// </summary>
    [Fact]
    public async Task IndexBuild_CancelledThroughTheJobsApi_StopsAndLeavesNoViewExportMountOrIndex_EventRecorded()
    {
        HostRequirements.RequireFileSystemStack();
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"), "--store-capacity", "2G");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 256L << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest(Target: "mail"));
        await using var live = await AttachedExport.AttachAsync(export.Url!, temp.CreateDirectory("live"), readOnly: false);
        await live.FormatExt4Async();
        await live.MountAsync("rw");

        // Enough small messages that reading their headers takes a while after the build has listed them.
        for (var u = 0; u < 4; u++)
        {
            var cur = Directory.CreateDirectory(Path.Combine(live.MountPoint, $"u{u}", "Maildir", "cur")).FullName;
            for (var i = 0; i < 5000; i++)
            {
                await File.WriteAllTextAsync(Path.Combine(cur, $"17955{i:D5}.M{i}P{u}.vm:2,S"), $"From: sender{i % 50}@example.org\nTo: u{u}@example.test\nMessage-ID: <c{u}-{i}@example.org>\nSubject: message {i}\n\nbody {i}\n");
            }
        }

        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
        var identity = await client.GetIdentityAsync();
        var agentDirectory = temp.Combine("agent");
        // A mail entry names the mail server's configuration; the crash-consistent snapshot below never uses it.
        var conf = temp.Combine("dovecot.conf");
        await File.WriteAllTextAsync(conf, "");
        await using var agent = await AgentProcess.StartAsync(agentDirectory, identity.Fingerprint, deadlineSeconds: 10, [(live.MountPoint, "mail")], mail: [$"root={live.MountPoint},dovecot={conf}"]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        var snapshot = await client.CreateSnapshotAsync("mail", new CreateSnapshotRequest("s1", ["app"], "crash"));
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        JobDto? running = null;
        while (running is null || !agent.Log.Contains("mounted read-only", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"no index build of {snapshot.Address} mounted its view within 3 minutes\n{agent.Log}");
            running ??= (await client.ListJobsAsync()).FirstOrDefault(j => j.Kind == "mail.index" && j.Subject == snapshot.Address && j.State == "running");
            await Task.Delay(50);
        }

        // The build reads 20,000 headers in about two seconds, so a cancel racing it could arrive after
        // the end (it did in CI: pausing the whole agent left the cancel's TLS handshake to race the
        // build once continued). So the view's nbdfuse is stopped instead: the build's reads wait in
        // the kernel while the agent serves the cancel, and only once the agent says it took the
        // cancel does the build go on, to find itself cancelled.
        using (var paused = agent.PauseChildren("nbdfuse"))
        {
            Assert.True(paused.Count > 0, $"the agent runs no nbdfuse for the view\n{agent.Log}");
            await client.CancelJobAsync(running.Id);
            while (!agent.Log.Contains("the server asked to cancel it", StringComparison.Ordinal))
            {
                Assert.True(DateTime.UtcNow < deadline, $"the agent did not take the cancel within 3 minutes\n{agent.Log}");
                await Task.Delay(50);
            }
        }

        var ended = await WaitForJobAsync(client, "mail.index", snapshot.Address);
        output.WriteLine(agent.Log);
        Assert.True(ended.State == "cancelled", $"{ended.State}: {ended.Error}");
        Assert.Contains(await client.ListEventsAsync(kind: "mail.index"), e => e.Subject == snapshot.Address && e.Outcome == "failed" && e.Message.Contains("cancelled", StringComparison.Ordinal));
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));
        Assert.Equal([export.Name], (await client.ListExportsAsync()).Select(e => e.Name));
        Assert.DoesNotContain("tidemark-recover-", await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal);
        var indexDirectory = Path.Combine(agentDirectory, MailRecoveryJob.IndexDirectoryName);
        Assert.Empty(Directory.Exists(indexDirectory) ? Directory.GetFiles(indexDirectory, "*.idx", SearchOption.AllDirectories) : Array.Empty<string>());
    }

    private static async Task<JobDto> WaitForJobAsync(TidemarkClient client, string kind, string subject)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(3);
        while (true)
        {
            var job = (await client.ListJobsAsync()).FirstOrDefault(j => j.Kind == kind && j.Subject == subject && j.State != "running");
            if (job is not null)
            {
                return job;
            }

            Assert.True(DateTime.UtcNow < deadline, $"no {kind} job of {subject} ended within 3 minutes");
            await Task.Delay(250);
        }
    }
}
