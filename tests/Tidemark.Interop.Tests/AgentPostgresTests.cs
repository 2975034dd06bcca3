using System.Globalization;
using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;

namespace Tidemark.Interop.Tests;

/// <summary>
/// The agent's PostgreSQL plugin with Debian's PostgreSQL on ext4 on a volume (ADR 0015): a snapshot
/// taken through the agent under pgbench load puts the cluster in backup mode (pg_backup_start on a
/// held connection) and freezes the file system around the cut; the snapshot is labelled
/// application-consistent, keeps the backup label, and a second PostgreSQL started on its view
/// passes pg_amcheck with balanced pgbench books; the agent's own verification of the snapshot
/// (PostgreSQL started on an overlay of a view, pg_amcheck) passes too. In mode atomic-cut the cluster
/// is not put in backup mode: the snapshot says so (filesystem, no label) and its view starts by
/// crash recovery and passes pg_amcheck with balanced books. With data and WAL on two
/// volumes of a group, the agent verifies the group's cut as a view pair (passed on both snapshots),
/// and a cut whose WAL is garbage fails with PostgreSQL's start failure.
/// </summary>
public sealed class AgentPostgresTests
{
    private const long VolumeBytes = 2L << 30;
    private const int Scale = 5;

    [Fact]
    public async Task ConsistentSnapshot_PostgresUnderPgbench_ApplicationConsistentWithLabelAndViewPassesAmcheck()
    {
        var bin = HostRequirements.RequirePostgres();
        using var temp = new TempDirectory();
        await using var pg = await Ext4Volume.StartAsync(temp, "pg", VolumeBytes, storeCapacity: "6G");
        var (client, live) = (pg.Client, pg.Live);
        await using var primary = await pg.StartPostgresAsync(bin, temp, Scale);
        var identity = await client.GetIdentityAsync();
        var connection = $"main:Host={primary.SocketDirectory};Port={primary.Port.ToString(CultureInfo.InvariantCulture)};Username=postgres;Database=postgres";

        // The agent's TMPDIR is private (pam_tmpdir, PrivateTmp): the PostgreSQL it starts on the view runs
        // as postgres and could not enter a work directory made there.
        var privateTmp = temp.CreateDirectory("private-tmp");
        File.SetUnixFileMode(privateTmp, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 60, [(live.MountPoint, "pg")], [connection], environment: new Dictionary<string, string?> { ["TMPDIR"] = privateTmp });
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        SnapshotDto? taken = null;
        var (committedBeforeSnapshot, loadOutput) = await PostgresSnapshotTests.SnapshotUnderLoadAsync(primary, async () =>
            taken = await client.CreateSnapshotAsync("pg", new CreateSnapshotRequest("under-load", ["app"])),
            loadSeconds: 60); // pg_backup_start's checkpoint takes seconds on a loaded machine: the load must outlast it
        var labels = await client.GetBackupLabelsAsync("pg@under-load");
        var verified = await client.VerifySnapshotAsync("pg@under-load", new VerifySnapshotRequest("app"));

        var clone = await PostgresClone.StartOnViewAsync(client, "pg@under-load", bin, temp);
        await primary.StopAsync();

        Assert.NotNull(taken);
        Assert.StartsWith($"application (app: postgresql: cluster main, {live.MountPoint} (ext4))", taken.Consistency, StringComparison.Ordinal);
        var label = Assert.Single(labels.Labels);
        Assert.Equal("app/main", label.Key);
        Assert.Contains("START WAL LOCATION:", label.Value, StringComparison.Ordinal);
        Assert.Contains("LABEL: tidemark app", label.Value, StringComparison.Ordinal);
        Assert.True(verified.Verification?.Verdict == VerifyResultDto.Passed, $"verification through the agent: {verified.Verification?.Summary}");
        Assert.Contains("postgresql cluster main: started, pg_amcheck clean", verified.Verification!.Checks);
        Assert.Contains("e2fsck -fn: clean", verified.Verification.Checks);
        clone.AssertIntact(committedBeforeSnapshot, loadOutput);
    }

    [Fact]
    public async Task AtomicCutMode_PostgresUnderPgbench_NoBackupModeLabelledAsSuch_ViewStartsByRecoveryAndPassesAmcheck()
    {
        var bin = HostRequirements.RequirePostgres();
        using var temp = new TempDirectory();
        await using var pg = await Ext4Volume.StartAsync(temp, "pg", VolumeBytes, storeCapacity: "6G");
        var (client, live) = (pg.Client, pg.Live);
        await using var primary = await pg.StartPostgresAsync(bin, temp, Scale);
        var identity = await client.GetIdentityAsync();
        var connection = $"main:Host={primary.SocketDirectory};Port={primary.Port.ToString(CultureInfo.InvariantCulture)};Username=postgres;Database=postgres";
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 60, [(live.MountPoint, "pg")], [connection], pairOptions: ["--postgres-mode", "atomic-cut"]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        SnapshotDto? taken = null;
        var (committedBeforeSnapshot, loadOutput) = await PostgresSnapshotTests.SnapshotUnderLoadAsync(primary, async () =>
            taken = await client.CreateSnapshotAsync("pg", new CreateSnapshotRequest("atomic", ["app"])));
        var noLabel = await Assert.ThrowsAsync<TidemarkApiException>(() => client.GetBackupLabelsAsync("pg@atomic"));

        var clone = await PostgresClone.StartOnViewAsync(client, "pg@atomic", bin, temp);
        await primary.StopAsync();

        // Not application: PostgreSQL was not told; the freeze and the one-instant cut make it a
        // snapshot its own crash recovery starts from, which the view proves.
        Assert.NotNull(taken);
        Assert.StartsWith($"filesystem (app: postgresql: cluster main (atomic cut, no backup mode), {live.MountPoint} (ext4))", taken.Consistency, StringComparison.Ordinal);
        Assert.Contains("has no backup label", noLabel.Message, StringComparison.Ordinal); // backup mode would have left pg_backup_stop's
        Assert.Contains("database system was not properly shut down; automatic recovery in progress", clone.Log, StringComparison.Ordinal);
        clone.AssertIntact(committedBeforeSnapshot, loadOutput);
    }

    [Fact]
    public async Task GroupSnapshot_DataAndWalOnTwoVolumes_CutUnderOneBackup_GroupVerifyPasses_ViewPairStarts_DamagedWalFails()
    {
        var bin = HostRequirements.RequirePostgres();
        using var temp = new TempDirectory();
        await using var data = await Ext4Volume.StartAsync(temp, "pgdata", VolumeBytes, storeCapacity: "6G");
        var client = data.Client;
        await client.CreateVolumeAsync(new CreateVolumeRequest("pgwal", VolumeBytes));
        var walExport = await client.CreateExportAsync(new CreateExportRequest(Target: "pgwal"));
        await using var wal = await AttachedExport.AttachAsync(walExport.Url!, temp.CreateDirectory("wal"), readOnly: false);
        await wal.FormatExt4Async();
        await wal.MountAsync("rw");
        var dataDirectory = Path.Combine(data.Live.MountPoint, "pgdata");
        await PostgresInstance.InitDbAsync(bin, dataDirectory, Path.Combine(wal.MountPoint, "pg_wal"));
        await using var primary = await PostgresInstance.StartAsync(bin, dataDirectory, temp.Combine("sock-primary"));
        await primary.RunClientAsync(TimeSpan.FromMinutes(3), "pgbench", "-i", "-q", "-s", "2", "postgres");
        await client.CreateGroupAsync(new CreateGroupRequest("pg", ["pgdata", "pgwal"]));
        var identity = await client.GetIdentityAsync();
        var connection = $"main:Host={primary.SocketDirectory};Port={primary.Port.ToString(CultureInfo.InvariantCulture)};Username=postgres;Database=postgres";
        await using var agent = await AgentProcess.StartAsync(temp.Combine("agent"), identity.Fingerprint, deadlineSeconds: 60, [(data.Live.MountPoint, "pgdata"), (wal.MountPoint, "pgwal")], [connection]);
        await client.AddHostAsync(new AddHostRequest("app", agent.Address, agent.Fingerprint));

        IReadOnlyList<SnapshotDto> taken = [];
        var (committedBeforeSnapshot, loadOutput) = await PostgresSnapshotTests.SnapshotUnderLoadAsync(primary, async () =>
            taken = await client.SnapshotGroupAsync("pg", new CreateSnapshotRequest("g1", ["app"])),
            loadSeconds: 60);
        var labels = await client.GetBackupLabelsAsync("pgdata@g1");
        var dataAlone = await client.VerifySnapshotAsync("pgdata@g1", new VerifySnapshotRequest("app"));
        var pair = await client.VerifyGroupSnapshotAsync("pg", "g1", new VerifySnapshotRequest("app"));
        var stored = await client.ListSnapshotsAsync("pgwal");

        // The view pair: each member's view attached and mounted, the data view's pg_wal link pointed
        // at the WAL view (in the image it names the live WAL directory).
        await client.CreateViewAsync("pgdata@g1", "data-view");
        await client.CreateViewAsync("pgwal@g1", "wal-view");
        var dataViewExport = await client.CreateExportAsync(new CreateExportRequest(Target: "data-view"));
        var walViewExport = await client.CreateExportAsync(new CreateExportRequest(Target: "wal-view"));
        await using var dataView = await AttachedExport.AttachAsync(dataViewExport.Url!, temp.CreateDirectory("data-view"), readOnly: false);
        await using var walView = await AttachedExport.AttachAsync(walViewExport.Url!, temp.CreateDirectory("wal-view"), readOnly: false);
        await dataView.MountAsync("rw");
        await walView.MountAsync("rw");
        var cloneData = Path.Combine(dataView.MountPoint, "pgdata");
        var link = new DirectoryInfo(Path.Combine(cloneData, "pg_wal")).LinkTarget;
        Directory.Delete(Path.Combine(cloneData, "pg_wal"));
        Directory.CreateSymbolicLink(Path.Combine(cloneData, "pg_wal"), Path.Combine(walView.MountPoint, "pg_wal"));
        File.Delete(Path.Combine(cloneData, "postmaster.pid"));
        await using var clone = await PostgresInstance.StartAsync(bin, cloneData, temp.Combine("sock-clone"));
        var amcheck = await clone.RunClientAsync(TimeSpan.FromMinutes(2), "pg_amcheck", "--all", "--install-missing", "--heapallindexed");
        var committedInClone = await clone.CountAsync("pgbench_history");
        var balanced = await clone.QueryAsync(PostgresClone.BooksBalance);
        await clone.StopAsync();

        // A cut whose WAL member is damaged: views of g1's members, garbage over every WAL segment of the
        // WAL view, the two views grouped and cut; a second agent declares the live paths on those views.
        await client.CreateViewAsync("pgdata@g1", "bad-data");
        await client.CreateViewAsync("pgwal@g1", "bad-wal");
        var badWalExport = await client.CreateExportAsync(new CreateExportRequest(Target: "bad-wal"));
        await using (var badWal = await AttachedExport.AttachAsync(badWalExport.Url!, temp.CreateDirectory("bad-wal"), readOnly: false))
        {
            await badWal.MountAsync("rw");
            foreach (var segment in Directory.GetFiles(Path.Combine(badWal.MountPoint, "pg_wal")).Where(f => Path.GetFileName(f).Length == 24))
            {
                await File.WriteAllBytesAsync(segment, System.Security.Cryptography.RandomNumberGenerator.GetBytes((int)new FileInfo(segment).Length));
            }
        }

        await client.DeleteExportAsync(badWalExport.Name);
        await client.CreateGroupAsync(new CreateGroupRequest("bad", ["bad-data", "bad-wal"]));
        await client.SnapshotGroupAsync("bad", "b1");
        await using var agent2 = await AgentProcess.StartAsync(temp.Combine("agent2"), identity.Fingerprint, deadlineSeconds: 60, [(data.Live.MountPoint, "bad-data"), (wal.MountPoint, "bad-wal")], [connection]);
        await client.AddHostAsync(new AddHostRequest("app2", agent2.Address, agent2.Fingerprint));
        var damaged = await client.VerifyGroupSnapshotAsync("bad", "b1", new VerifySnapshotRequest("app2"));
        await primary.StopAsync();

        Assert.Equal(2, pair.Count);
        Assert.All(pair, s => Assert.True(s.Verification?.Verdict == VerifyResultDto.Passed, $"{s.Address}: {s.Verification?.Summary}"));
        Assert.Contains("postgresql cluster main (data on pgdata, WAL on pgwal): started, pg_amcheck clean", pair[0].Verification!.Checks);
        Assert.Contains("pgwal: e2fsck -fn: clean", pair[0].Verification!.Checks);
        Assert.Equal(VerifyResultDto.Passed, stored.Single(s => s.Name == "g1").Verification?.Verdict);
        Assert.Equal(2, damaged.Count);
        Assert.All(damaged, s => Assert.True(s.Verification?.Verdict == VerifyResultDto.Failed, $"{s.Address}: {s.Verification?.Summary}"));
        Assert.Contains("WAL on bad-wal", damaged[0].Verification!.Reason, StringComparison.Ordinal);
        Assert.Contains("does not start", damaged[0].Verification!.Reason, StringComparison.Ordinal);
        Assert.Equal(2, taken.Count);
        Assert.All(taken, t => Assert.StartsWith($"application (app: postgresql: cluster main, {data.Live.MountPoint} (ext4), {wal.MountPoint} (ext4))", t.Consistency, StringComparison.Ordinal));
        Assert.Equal("app/main", Assert.Single(labels.Labels).Key);
        Assert.Equal(Path.Combine(wal.MountPoint, "pg_wal"), link);
        Assert.Equal(VerifyResultDto.NotChecked, dataAlone.Verification?.Verdict);
        Assert.Contains("its WAL is not on volume pgdata", dataAlone.Verification!.Reason, StringComparison.Ordinal);
        Assert.True(amcheck.ExitCode == 0, $"pg_amcheck on the view pair: {amcheck.StandardOutput}\n{amcheck.StandardError}");
        Assert.Equal("t", balanced);
        Assert.True(committedInClone >= committedBeforeSnapshot, $"the view pair lost committed transactions: {committedInClone} history rows, {committedBeforeSnapshot} committed before the snapshot\npgbench: {loadOutput}");
    }
}
