using System.Diagnostics;
using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;

namespace Tidemark.Interop.Tests;

/// <summary>
/// The agent's file-system plugin on a real kernel ext4 (NBD export, nbdfuse, loop device; ADR
/// 0015): a snapshot taken through the agent while a writer runs needs no journal recovery, where a
/// plain snapshot of the same file system does; a replication cycle through the agent sends such a
/// snapshot to the DR site; and an agent whose server never calls back thaws by itself at its deadline.
/// </summary>
public sealed class AgentFreezeTests
{
    private const long VolumeBytes = 1L << 30;

    [Fact]
    public async Task ConsistentSnapshot_Ext4UnderWriter_LabelledFileSystemAndViewNeedsNoRecovery()
    {
        HostRequirements.RequireFileSystemStack();
        using var temp = new TempDirectory();
        await using var fs = await Ext4Volume.StartAsync(temp, "fs", VolumeBytes, storeCapacity: "4G");
        var (client, live) = (fs.Client, fs.Live);
        var identity = await client.GetIdentityAsync();
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 10, [(live.MountPoint, "fs")]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        SnapshotDto consistent, plain;
        HostStatusDto status;
        int writtenAtEnd;
        using (var writer = new Writer(Path.Combine(live.MountPoint, "w")))
        {
            await writer.WaitForFilesAsync(20);
            consistent = await client.CreateSnapshotAsync("fs", new CreateSnapshotRequest("quiesced", ["app"]));
            plain = await client.CreateSnapshotAsync("fs", "plain");

            // The writer goes on after the thaw: nothing stays frozen.
            await writer.WaitForFilesAsync(writer.Files + 20);
            status = await client.GetHostStatusAsync("app");
            writtenAtEnd = writer.Files;
        }

        var listed = await client.ListSnapshotsAsync("fs");
        var quiesced = await InspectAsync(client, temp, "fs@quiesced", "v-quiesced");
        var crash = await InspectAsync(client, temp, "fs@plain", "v-plain");

        Assert.Equal($"filesystem (app: {live.MountPoint} (ext4))", consistent.Consistency);
        Assert.Equal(consistent.Consistency, listed.Single(s => s.Name == "quiesced").Consistency);
        Assert.Equal("crash", plain.Consistency);
        Assert.Empty(status.Status.Sessions);
        Assert.Equal("resumed", status.Status.LastSession?.State);
        Assert.True(status.Status.LastSession!.FrozenSeconds is > 0 and var frozen && frozen <= status.Status.LastSession.PausedSeconds, $"frozen {status.Status.LastSession.FrozenSeconds}s of a {status.Status.LastSession.PausedSeconds}s quiesce");
        Assert.True(writtenAtEnd > 40, $"the writer wrote {writtenAtEnd} files");

        Assert.DoesNotContain("needs_recovery", quiesced.Features, StringComparison.Ordinal);
        Assert.Contains("clean", quiesced.State, StringComparison.Ordinal);
        Assert.True(quiesced.FsckExitCode == 0, $"e2fsck -fn on the quiesced snapshot's view: exit {quiesced.FsckExitCode}\n{quiesced.FsckOutput}");
        Assert.True(quiesced.MountedReadOnly, "the quiesced snapshot's view mounts read-only: nothing to replay");
        Assert.True(quiesced.Files > 0, "the view holds the writer's files");

        // The same file system cut without the agent: its journal must be replayed first.
        Assert.Contains("needs_recovery", crash.Features, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReplicaSync_HostFreezesTheMount_ReplicatedSnapshotLabelledFileSystem_ItsViewAtTheDrSiteNeedsNoRecovery()
    {
        HostRequirements.RequireFileSystemStack();
        using var temp = new TempDirectory();
        await using var fs = await Ext4Volume.StartAsync(temp, "fs", VolumeBytes, storeCapacity: "4G");
        await using var dr = await ServerProcess.StartAsync(temp.Combine("dr"), "--store-capacity", "4G");
        var (client, live) = (fs.Client, fs.Live);
        using var drClient = dr.Client();
        var identity = await client.GetIdentityAsync();
        var drIdentity = await drClient.GetIdentityAsync();
        await client.AddPartnerAsync(new AddPartnerRequest("dr", drIdentity.ReplicationAddress!, drIdentity.Fingerprint));
        await drClient.AddPartnerAsync(new AddPartnerRequest("home", identity.ReplicationAddress!, identity.Fingerprint));
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 10, [(live.MountPoint, "fs")]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));
        await client.CreateReplicaAsync(new CreateReplicaRequest("fs", "dr", Hosts: ["app"], Fallback: "skip"));

        ReplicaDto synced;
        HostStatusDto status;
        using (var writer = new Writer(Path.Combine(live.MountPoint, "w")))
        {
            await writer.WaitForFilesAsync(20);
            synced = await client.SyncReplicaAsync("fs");

            // The writer goes on after the thaw: nothing stays frozen.
            await writer.WaitForFilesAsync(writer.Files + 20);
            status = await client.GetHostStatusAsync("app");
        }

        var source = Assert.Single(await client.ListSnapshotsAsync("fs"));
        var atDr = await InspectAsync(drClient, temp, $"fs@{synced.LastSnapshot}", "v-dr");

        Assert.Equal($"filesystem (app: {live.MountPoint} (ext4))", source.Consistency);
        Assert.Equal(source.Consistency, synced.LastConsistency);
        Assert.Equal("resumed", status.Status.LastSession?.State);
        Assert.True(status.Status.LastSession!.FrozenSeconds > 0, "the agent froze the mount for the cycle's cut");

        // The DR site's copy is the file system as the freeze left it: no journal to replay.
        Assert.DoesNotContain("needs_recovery", atDr.Features, StringComparison.Ordinal);
        Assert.True(atDr.FsckExitCode == 0, $"e2fsck -fn on the DR site's view: exit {atDr.FsckExitCode}\n{atDr.FsckOutput}");
        Assert.True(atDr.MountedReadOnly, "the DR site's view mounts read-only: nothing to replay");
        Assert.True(atDr.Files > 0, "the view holds the writer's files");
    }

    [Fact]
    public async Task ConsistentSnapshot_NbdfuseAttachmentNotDeclared_FoundByItsExportAndFrozen()
    {
        // The agent's config declares no mount: the ext4 on nbdfuse + loop is found from the nbdfuse
        // process's URI and the export URLs the server sends with the quiesce (issue 19).
        HostRequirements.RequireFileSystemStack();
        using var temp = new TempDirectory();
        await using var fs = await Ext4Volume.StartAsync(temp, "fs", VolumeBytes, storeCapacity: "4G");
        var (client, live) = (fs.Client, fs.Live);
        await client.CreateVolumeAsync(new CreateVolumeRequest("other", 64L << 20));
        var identity = await client.GetIdentityAsync();
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 10, []);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        SnapshotDto consistent;
        using (var writer = new Writer(Path.Combine(live.MountPoint, "w")))
        {
            await writer.WaitForFilesAsync(20);
            consistent = await client.CreateSnapshotAsync("fs", new CreateSnapshotRequest("found", ["app"]));
        }

        var status = await client.GetHostStatusAsync("app");
        var notAttached = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreateSnapshotAsync("other", new CreateSnapshotRequest("s", ["app"])));
        var quiesced = await InspectAsync(client, temp, "fs@found", "v-found");

        Assert.Equal($"filesystem (app: {live.MountPoint} (ext4))", consistent.Consistency);
        var mount = Assert.Single(status.Mounts, m => m.Path == live.MountPoint);
        Assert.Null(mount.Volume);
        Assert.EndsWith("/fs", mount.Attachment, StringComparison.Ordinal);
        Assert.Contains("nothing on this host sits on other", notAttached.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("needs_recovery", quiesced.Features, StringComparison.Ordinal);
        Assert.True(quiesced.FsckExitCode == 0, $"e2fsck -fn on the quiesced snapshot's view: exit {quiesced.FsckExitCode}\n{quiesced.FsckOutput}");
    }

    [Fact]
    public async Task AgentDirectory_OnAFileSystemItFreezes_RefusedAtPairAtStartAndAtQuiesce()
    {
        HostRequirements.RequireFileSystemStack();
        using var temp = new TempDirectory();
        await using var fs = await Ext4Volume.StartAsync(temp, "fs", VolumeBytes, storeCapacity: "4G");
        var (server, client, live) = (fs.Server, fs.Client, fs.Live);
        var fingerprint = (await client.GetIdentityAsync()).Fingerprint;
        string[] Pair(string directory, string mount, string volume) =>
            [TidemarkBuild.DllPath, "agent", "pair", "--agent-dir", directory, "--server-fingerprint", fingerprint, "--listen", "127.0.0.1:0", "--mount", $"{mount}={volume}"];

        // At pair: the agent directory inside the very mount it is told to freeze.
        var onVolume = Path.Combine(live.MountPoint, "agent");
        var pair = await ProcessRunner.RunAsync("dotnet", Pair(onVolume, live.MountPoint, "fs"));

        // At start: a directory paired elsewhere, then copied onto the volume.
        var elsewhere = temp.Combine("agent");
        (await ProcessRunner.RunAsync("dotnet", Pair(elsewhere, live.MountPoint, "fs"))).AssertSuccess();
        var moved = Path.Combine(live.MountPoint, "agent-moved");
        (await ProcessRunner.RunAsync("cp", "-a", elsewhere, moved)).AssertSuccess();
        var start = await ProcessRunner.RunAsync(TimeSpan.FromMinutes(2), "dotnet", TidemarkBuild.DllPath, "agent", "run", "--agent-dir", moved);

        // At quiesce: the agent started with its directory on the host's own file system, then the
        // volume was bind-mounted over the directory that holds it (the mount table says so only now).
        var late = temp.CreateDirectory("late");
        await using var agent = await AgentProcess.StartAsync(Path.Combine(late, "agent"), fingerprint, deadlineSeconds: 10, [(late, "late")]);
        Directory.CreateDirectory(Path.Combine(live.MountPoint, "sub", "agent"));
        (await ProcessRunner.RunAsync("mount", "--bind", Path.Combine(live.MountPoint, "sub"), late)).AssertSuccess();
        HttpResponseMessage quiesce;
        string answer;
        try
        {
            using var asServer = agent.ClientAsServer(server.DataDirectory);
            quiesce = await AgentProcess.PostAsync(asServer, "quiesce", new QuiesceRequest(["late"]));
            answer = await quiesce.Content.ReadAsStringAsync();
        }
        finally
        {
            await ProcessRunner.TryRunAsync("umount", late);
        }

        Assert.Equal(2, pair.ExitCode);
        Assert.Contains($"the agent directory {onVolume}", pair.StandardError, StringComparison.Ordinal);
        Assert.Contains($"which the agent freezes", pair.StandardError, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(onVolume, "agent.json")), "a refused pairing writes nothing");
        Assert.Equal(2, start.ExitCode);
        Assert.Contains($"the agent directory {moved}", start.StandardError, StringComparison.Ordinal);
        Assert.False(quiesce.IsSuccessStatusCode, answer);
        Assert.Contains($"is on the file system of {late} (volume late)", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Quiesce_ServerNeverResumes_AgentThawsByItselfAtItsDeadline()
    {
        HostRequirements.RequireFileSystemStack();
        using var temp = new TempDirectory();
        await using var fs = await Ext4Volume.StartAsync(temp, "fs", VolumeBytes, storeCapacity: "4G");
        var (server, client, live) = (fs.Server, fs.Client, fs.Live);
        var identity = await client.GetIdentityAsync();
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 3, [(live.MountPoint, "fs")]);

        // Play the server up to its quiesce call, then vanish, as a server killed before the cut does.
        using var asServer = agent.ClientAsServer(server.DataDirectory);
        var quiesce = await AgentProcess.ReadAsync<QuiesceResultDto>(await AgentProcess.PostAsync(asServer, "quiesce", new QuiesceRequest(["fs"])));
        var secondFreeze = await ProcessRunner.RunAsync(AttachedExport.Tool("fsfreeze"), "-f", live.MountPoint);
        var write = Task.Run(() =>
        {
            using var file = new FileStream(Path.Combine(live.MountPoint, "after-deadline"), FileMode.Create, FileAccess.Write, FileShare.None, 4096, FileOptions.WriteThrough);
            file.Write(new byte[4096]);
            file.Flush(flushToDisk: true);
        });
        await write.WaitAsync(TimeSpan.FromSeconds(120));
        var status = await AgentProcess.ReadAsync<AgentStatusDto>(await asServer.GetAsync("status"));
        var lateResume = await AgentProcess.ReadAsync<ResumeResultDto>(await AgentProcess.PostAsync(asServer, $"sessions/{quiesce.Session}/resume", null));
        var freezeAfter = await ProcessRunner.RunAsync(AttachedExport.Tool("fsfreeze"), "-f", live.MountPoint);
        if (freezeAfter.ExitCode == 0)
        {
            await ProcessRunner.CheckAsync(AttachedExport.Tool("fsfreeze"), "-u", live.MountPoint);
        }

        Assert.Equal([$"{live.MountPoint} (ext4)"], quiesce.Quiesced);
        Assert.Equal(3, quiesce.DeadlineSeconds);
        Assert.True(secondFreeze.ExitCode != 0, "while quiesced the file system is frozen (a second FIFREEZE is refused)");
        Assert.Empty(status.Sessions);
        Assert.Equal("expired", status.LastSession?.State);
        Assert.True(lateResume.Expired, "a resume after the deadline says the agent had resumed by itself");
        Assert.Equal(0, freezeAfter.ExitCode);
        Assert.Contains("did not resume session", agent.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Verify_GoodSnapshotPasses_CorruptedSnapshotFailsWithReason_ViewsDeleted()
    {
        HostRequirements.RequireFileSystemStack();
        using var temp = new TempDirectory();
        await using var fs = await Ext4Volume.StartAsync(temp, "fs", VolumeBytes, storeCapacity: "4G");
        var (client, live) = (fs.Client, fs.Live);
        FileTree.WriteRandom(live.MountPoint, files: 40, seed: 20261206);
        var identity = await client.GetIdentityAsync();
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 10, [(live.MountPoint, "fs")]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));
        await client.CreateSnapshotAsync("fs", new CreateSnapshotRequest("good", ["app"]));

        // Corrupt the file system the way a bad disk or a bug would: a directory's inode cleared while its
        // directory entry stays. It still mounts; only a check finds it.
        await ProcessRunner.CheckAsync(AttachedExport.Tool("umount"), live.MountPoint);
        (await ProcessRunner.RunAsync(TimeSpan.FromSeconds(60), AttachedExport.Tool("debugfs"), "-w", "-R", "clri /dir0", live.LoopDevice)).AssertSuccess();
        await client.CreateSnapshotAsync("fs", "corrupt");

        var good = await client.VerifySnapshotAsync("fs@good", new VerifySnapshotRequest("app"));
        var bad = await client.VerifySnapshotAsync("fs@corrupt", new VerifySnapshotRequest("app"));
        var listed = await client.ListSnapshotsAsync("fs");
        var volumes = await client.ListVolumesAsync();
        var exports = await client.ListExportsAsync();
        var events = await client.ListEventsAsync();

        Assert.True(good.Verification?.Verdict == VerifyResultDto.Passed, $"fs@good: {good.Verification?.Summary}");
        Assert.Contains("e2fsck -fn: clean", good.Verification!.Checks);
        Assert.Equal(VerifyResultDto.Failed, bad.Verification?.Verdict);
        Assert.Contains("e2fsck -fn found problems in the ext4 file system", bad.Verification!.Reason, StringComparison.Ordinal);
        Assert.Equal(bad.Verification.Summary, listed.Single(s => s.Name == "corrupt").Verification?.Summary);
        Assert.DoesNotContain(volumes, v => v.Name.StartsWith("verify-", StringComparison.Ordinal));
        Assert.DoesNotContain(exports, e => e.Name.StartsWith("verify-", StringComparison.Ordinal));
        Assert.Contains(events, e => e.Kind == "snapshot.verify" && e.Subject == "fs@corrupt" && e.Outcome == "failed");
        Assert.Contains(events, e => e.Kind == "snapshot.verify" && e.Subject == "fs@good" && e.Outcome == "ok");
        Assert.DoesNotContain("tidemark-verify-", await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal); // the agent unmounted everything
    }

    [Fact]
    public async Task Verify_Xfs_GoodSnapshotPassesXfsRepair_CorruptedOneFails()
    {
        HostRequirements.RequireFileSystemStack();
        Assert.True(HostRequirements.FindOnPath("mkfs.xfs") is not null && HostRequirements.FindOnPath("xfs_db") is not null, "this machine cannot run the xfs test; missing xfsprogs (scripts/install-deps installs it)");
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"), "--store-capacity", "4G");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("xfs", VolumeBytes));
        var export = await client.CreateExportAsync(new CreateExportRequest(Target: "xfs"));
        await using var live = await AttachedExport.AttachAsync(export.Url!, temp.CreateDirectory("live"), readOnly: false);
        await live.FormatXfsAsync();
        await live.MountAsync("rw", "xfs");
        FileTree.WriteRandom(live.MountPoint, files: 40, seed: 20261207);
        var inode = (await ProcessRunner.CheckAsync(AttachedExport.Tool("stat"), "-c", "%i", Path.Combine(live.MountPoint, "dir0"))).StandardOutput.Trim();
        var identity = await client.GetIdentityAsync();
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 10, [(live.MountPoint, "xfs")]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));
        var good = await client.CreateSnapshotAsync("xfs", new CreateSnapshotRequest("good", ["app"]));

        // Verified while the live xfs (same UUID as the view) is mounted on this host, as on an application host.
        var passed = await client.VerifySnapshotAsync("xfs@good", new VerifySnapshotRequest("app"));

        // A directory's link count made wrong, as a bug or a bad disk would: it still mounts; only a check finds it.
        await ProcessRunner.CheckAsync(AttachedExport.Tool("umount"), live.MountPoint);
        (await ProcessRunner.RunAsync(TimeSpan.FromSeconds(60), AttachedExport.Tool("xfs_db"), "-x", "-c", $"inode {inode}", "-c", "write core.nlinkv2 9", live.LoopDevice)).AssertSuccess();
        await client.CreateSnapshotAsync("xfs", "corrupt");

        var failed = await client.VerifySnapshotAsync("xfs@corrupt", new VerifySnapshotRequest("app"));

        Assert.StartsWith($"filesystem (app: {live.MountPoint} (xfs))", good.Consistency, StringComparison.Ordinal);
        Assert.True(passed.Verification?.Verdict == VerifyResultDto.Passed, $"xfs@good: {passed.Verification?.Summary}");
        Assert.Contains("xfs_repair -n: clean", passed.Verification!.Checks);
        Assert.Equal(VerifyResultDto.Failed, failed.Verification?.Verdict);
        Assert.Contains("xfs_repair -n found problems in the xfs file system", failed.Verification!.Reason, StringComparison.Ordinal);
    }

    private static async Task<ViewReport> InspectAsync(TidemarkClient client, TempDirectory temp, string snapshot, string view)
    {
        await client.CreateViewAsync(snapshot, view);
        var export = await client.CreateExportAsync(new CreateExportRequest(Target: view, ReadOnly: true));
        await using var attached = await AttachedExport.AttachAsync(export.Url!, temp.CreateDirectory(view), readOnly: true);
        var header = (await ProcessRunner.RunAsync(TimeSpan.FromSeconds(60), AttachedExport.Tool("dumpe2fs"), "-h", attached.LoopDevice)).AssertSuccess().StandardOutput;
        string Field(string name) => header.Split('\n').FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal))?[name.Length..].Trim() ?? "";
        var features = Field("Filesystem features:");
        var state = Field("Filesystem state:");
        if (features.Contains("needs_recovery", StringComparison.Ordinal))
        {
            return new ViewReport(features, state, -1, "", false, 0);
        }

        var fsck = await attached.CheckFileSystemAsync();
        var mounted = await ProcessRunner.TryRunAsync(AttachedExport.Tool("mount"), "-t", "ext4", "-o", "ro", attached.LoopDevice, attached.MountPoint) is { ExitCode: 0 };
        var files = mounted && Directory.Exists(Path.Combine(attached.MountPoint, "w")) ? Directory.GetFiles(Path.Combine(attached.MountPoint, "w")).Length : 0;
        return new ViewReport(features, state, fsck.ExitCode, fsck.StandardOutput + fsck.StandardError, mounted, files);
    }

    private sealed record ViewReport(string Features, string State, int FsckExitCode, string FsckOutput, bool MountedReadOnly, int Files);

    /// <summary>Writes 64 KiB files one after another (every 8th synced) until disposed; blocks while the file system is frozen.</summary>
    private sealed class Writer : IDisposable
    {
        private readonly Thread _thread;
        private volatile bool _stop;
        private int _files;

        public Writer(string directory)
        {
            Directory.CreateDirectory(directory);
            _thread = new Thread(() =>
            {
                var data = new byte[64 << 10];
                for (var i = 0; !_stop; i++)
                {
                    Random.Shared.NextBytes(data);
                    using (var file = new FileStream(Path.Combine(directory, $"{i:D6}.bin"), FileMode.Create, FileAccess.Write))
                    {
                        file.Write(data);
                        if (i % 8 == 0)
                        {
                            file.Flush(flushToDisk: true);
                        }
                    }

                    Interlocked.Increment(ref _files);
                }
            })
            { IsBackground = true, Name = "ext4 writer" };
            _thread.Start();
        }

        public int Files => Volatile.Read(ref _files);

        public async Task WaitForFilesAsync(int count)
        {
            var waited = Stopwatch.StartNew();
            while (Files < count)
            {
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(120), $"the writer wrote only {Files} of {count} files in two minutes");
                await Task.Delay(20);
            }
        }

        public void Dispose()
        {
            _stop = true;
            _thread.Join();
        }
    }
}
