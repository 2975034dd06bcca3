using System.Net;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Issue 16: a DR copy is always exactly one of the source's snapshots, whatever the DR site's
/// administrator does meanwhile (snapshots by hand, read-write exports) and whatever a stale side
/// sends after a fail-back. Two real servers; the home site reaches the DR site through a proxy the
/// test can cut.
/// </summary>
public sealed class ReplicaTrustTests(Xunit.Abstractions.ITestOutputHelper output) : TwoSiteTests
{
    private async Task<CuttingProxy> PairThroughProxyAsync()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        var homeId = await home.GetIdentityAsync();
        var drId = await dr.GetIdentityAsync();
        var proxy = new CuttingProxy(IPEndPoint.Parse(drId.ReplicationAddress!), cutAfterBytes: 1 << 20, cuts: 0);
        await home.AddPartnerAsync(new AddPartnerRequest("dr", proxy.Address, drId.Fingerprint));
        await dr.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint));
        return proxy;
    }

    [Fact]
    public async Task HandMadeSnapshotAtTheDrSite_AfterABrokenTransfer_IsNeverTakenForAReplicatedOne()
    {
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        using var dr = Dr.Client();
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 64 << 20));
        var live = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await Sites.WriteRandomAsync(live.Url!, 0, 4 << 20);
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var first = await home.SyncReplicaAsync("mail");

        // A sync breaks off every attempt; the DR site's administrator snapshots the half-applied replica.
        proxy.CutEveryConnection = true;
        await Sites.WriteRandomAsync(live.Url!, 8 << 20, 24 << 20);
        var failed = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("mail"));
        await dr.CreateSnapshotAsync("mail", "by-hand");
        var incoming = Assert.Single(await dr.ListIncomingAsync());

        // The next sync over a good link is not refused because of that snapshot.
        proxy.CutEveryConnection = false;
        var second = await home.SyncReplicaAsync("mail");
        var secondHash = await Sites.HashSnapshotAsync(Home, $"mail@{second.LastSnapshot}");

        // Once more, then the disaster: promote returns the newest replicated snapshot, not the hand-made one.
        proxy.CutEveryConnection = true;
        await Sites.WriteRandomAsync(live.Url!, 40 << 20, 16 << 20);
        await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("mail"));
        await dr.CreateSnapshotAsync("mail", "by-hand-2");
        var promoted = await dr.PromoteReplicaAsync("mail");
        await dr.CreateSnapshotAsync("mail", "as-promoted");

        Assert.Contains("after 6 attempts", failed.Message, StringComparison.Ordinal);
        Assert.Equal(first.LastSnapshot, incoming.LastSnapshot);
        Assert.Equal(1, incoming.Sequence);
        Assert.Null(second.LastError);
        Assert.Equal(secondHash, await Sites.HashSnapshotAsync(Dr, $"mail@{second.LastSnapshot}"));
        Assert.Equal(second.LastSnapshot, promoted.Snapshot.Name);
        Assert.Equal(secondHash, await Sites.HashSnapshotAsync(Dr, "mail@as-promoted"));
        Assert.Contains(await dr.ListSnapshotsAsync("mail"), s => s.Name == "by-hand"); // the administrator's stay
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task ReadWriteExport_OfAReplica_IsRefusedWithAViewSuggested_ReadOnlyExportsAndViewsStayAllowed()
    {
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        using var dr = Dr.Client();
        await home.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        await home.CreateReplicaAsync(new CreateReplicaRequest("db", "dr"));
        var synced = await home.SyncReplicaAsync("db");

        var nbd = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.CreateExportAsync(new CreateExportRequest("db", "db", "nbd")));
        var iscsi = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.CreateExportAsync(new CreateExportRequest("db", "db-iscsi", "iscsi")));
        var cli = await CliProcess.RunAsync("export", "nbd", "db", "--data", Dr.DataDirectory);
        var readOnly = await dr.CreateExportAsync(new CreateExportRequest("db", "db-ro", "nbd", ReadOnly: true));
        await dr.CreateViewAsync($"db@{synced.LastSnapshot}", "db-test");
        var view = await dr.CreateExportAsync(new CreateExportRequest("db-test", "db-test", "nbd"));
        await dr.DeleteExportAsync("db-ro");
        var again = await home.SyncReplicaAsync("db"); // the replica still takes syncs
        await dr.PromoteReplicaAsync("db");
        var writable = await dr.CreateExportAsync(new CreateExportRequest("db", "db", "nbd"));

        Assert.Equal("read-only", nbd.Code);
        Assert.Contains("view create db@", nbd.Message, StringComparison.Ordinal);
        Assert.Contains("read-only until promoted", iscsi.Message, StringComparison.Ordinal);
        Assert.Equal(1, cli.ExitCode);
        Assert.Contains("view create", cli.StandardError, StringComparison.Ordinal);
        Assert.True(readOnly.ReadOnly);
        Assert.False(view.ReadOnly);
        Assert.Null(again.LastError);
        Assert.False(writable.ReadOnly);
    }

    [Fact]
    public async Task ReadWriteExport_OfAReplica_MadeBeforeTheRule_ComesUpReadOnlyAtStart_WithAWarningAndAnEvent()
    {
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        await home.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        await home.CreateReplicaAsync(new CreateReplicaRequest("db", "dr"));
        await home.SyncReplicaAsync("db");
        Assert.Equal(0, await Dr.StopAsync());

        // What an older version let an administrator keep: a read-write export of the replica.
        var path = Path.Combine(Dr.DataDirectory, "exports.json");
        await File.WriteAllTextAsync(path, """[{"name":"db","protocol":"nbd","target":"db","readOnly":false}]""");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        await using var restarted = await ServerProcess.StartAsync(Dr.DataDirectory);
        using var dr = restarted.Client();
        var export = Assert.Single(await dr.ListExportsAsync());
        var write = await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 65536", export.Url!);
        var evt = Assert.Single(await dr.ListEventsAsync(kind: "export.read-only"));
        Assert.Equal(0, await restarted.StopAsync());
        var persisted = StoredState.Read(Dr.DataDirectory, pool => pool.Control.Get(ExportRegistry.Kind, "db")!);

        Assert.True(export.ReadOnly);
        Assert.Equal("online", export.State);
        Assert.NotEqual(0, write.ExitCode);
        Assert.Equal("db", evt.Subject);
        Assert.Contains("export db was read-write, it is served read-only now", evt.Message, StringComparison.Ordinal);
        Assert.Contains("replica promote", evt.Message, StringComparison.Ordinal);
        Assert.Contains("served read-only now", restarted.Log, StringComparison.Ordinal);
        Assert.True(persisted.ReadOnly);
    }

    [Fact]
    public async Task StaleDrSite_PushingAnOldReverseSyncAfterFailBack_IsRefusedAtOnceAtBothEnds_AndHomeKeepsItsWrites()
    {
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        using var dr = Dr.Client();
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        await home.SyncReplicaAsync("mail");

        // Disaster, work at the DR site, fail back; the DR site is unreachable when home takes over again.
        await dr.PromoteReplicaAsync("mail");
        var drExport = await dr.CreateExportAsync(new CreateExportRequest("mail", "mail-dr", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", drExport.Url!)).AssertSuccess();
        await dr.ReverseReplicaAsync("mail");
        proxy.CutAfterBytes = 0;
        proxy.CutEveryConnection = true;
        var promotedAtHome = await home.PromoteReplicaAsync("mail");
        var homeExport = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x6b 2M 64k", homeExport.Url!)).AssertSuccess();
        await home.DeleteExportAsync("mail");
        await home.CreateSnapshotAsync("mail", "newer-at-home");
        var homeBefore = await home.ListSnapshotsAsync("mail");

        // The stale DR site syncs its old reverse replication: refused at once, nothing rolled back at home.
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x7c 3M 64k", drExport.Url!)).AssertSuccess();
        var stale = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.SyncReplicaAsync("mail"));
        var staleReplica = await dr.GetReplicaAsync("mail");
        var homeEvents = await home.ListEventsAsync(kind: "replica.refused");
        var homeAfter = await home.ListSnapshotsAsync("mail");
        await home.CreateSnapshotAsync("mail", "after-refusal");

        // Demoted by hand at the DR site, it takes home's replication again.
        await dr.DeleteExportAsync("mail-dr");
        await dr.DemoteReplicaAsync("mail");
        proxy.CutEveryConnection = false;
        var forward = await home.SyncReplicaAsync("mail");

        Assert.Contains("could not demote", promotedAtHome.Note, StringComparison.Ordinal);
        Assert.Contains("role generation 1", stale.Message, StringComparison.Ordinal);
        Assert.Contains("after 1 attempt", stale.Message, StringComparison.Ordinal);
        Assert.Equal(0, staleReplica.Retries);
        Assert.Contains("role generation", Assert.Single(homeEvents).Message, StringComparison.Ordinal);
        Assert.Equal(homeBefore.Select(s => s.Name), homeAfter.Select(s => s.Name)); // no pre-rollback snapshot
        Assert.Equal(await Sites.HashSnapshotAsync(Home, "mail@newer-at-home"), await Sites.HashSnapshotAsync(Home, "mail@after-refusal"));
        Assert.Null(forward.LastError);
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"mail@{forward.LastSnapshot}"), await Sites.HashSnapshotAsync(Dr, $"mail@{forward.LastSnapshot}"));
        Assert.Equal(2, Assert.Single(await dr.ListIncomingAsync()).Generation);
    }

    /// <summary>Issue 16's run (400 MiB, cuts every 8-24 MiB) with TIDEMARK_LONG=1; 64 MiB with cuts every 4-8 MiB by default.</summary>
    private static bool Long => Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1";

    [Fact]
    public async Task SyncsAfterFailedOnes_ContinueTheInterruptedTransfer_AndConvergeOnALinkThatKeepsBreaking()
    {
        var change = Long ? 400L << 20 : 64L << 20;
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        using var dr = Dr.Client();
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", change + (16 << 20)));
        var live = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr", CompressionLevel: 0));
        var initial = await home.SyncReplicaAsync("mail");
        for (long offset = 0; offset < change; offset += 64 << 20)
        {
            await Sites.WriteRandomAsync(live.Url!, offset, (int)Math.Min(64 << 20, change - offset));
        }

        var forwardedBefore = proxy.BytesForwarded;
        proxy.CutBetween = Long ? (8L << 20, 24L << 20) : (4L << 20, 8L << 20);
        proxy.CutEveryConnection = true;
        ReplicaDto? done = null;
        var syncs = 0;
        for (; syncs < (Long ? 80 : 20) && done is null; syncs++)
        {
            try
            {
                done = await home.SyncReplicaAsync("mail");
            }
            catch (TidemarkApiException ex) when (ex.Message.Contains("failed after", StringComparison.Ordinal))
            {
                // The link broke on every attempt of this sync; the next one continues.
            }
        }

        Assert.NotNull(done);
        var sent = proxy.BytesForwarded - forwardedBefore;
        output.WriteLine($"change {change:N0} bytes, {syncs} syncs, {proxy.CutsMade} cuts, {sent:N0} bytes crossed the link ({(double)sent / change:F2}x), the sender counted {done.BytesSent - initial.BytesSent:N0}");
        Assert.True(syncs > 1, "the link was meant to break more often than one sync retries");
        Assert.True(proxy.CutsMade >= (Long ? 20 : 6), $"only {proxy.CutsMade} cuts");
        Assert.True(sent < change * 3 / 2, $"{sent:N0} bytes crossed the link for a change of {change:N0} over {syncs} syncs and {proxy.CutsMade} cuts (the sender counted {done.BytesSent - initial.BytesSent:N0})");
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"mail@{done.LastSnapshot}"), await Sites.HashSnapshotAsync(Dr, $"mail@{done.LastSnapshot}"));
        Assert.Equal([done.LastSnapshot], (await home.ListSnapshotsAsync("mail")).Select(s => s.Name)); // no repl- snapshot left behind
    }

    [Fact]
    public async Task Demote_TakesAGroupName_AndEveryMemberBecomesAReplicaThatTakesSyncsAgain()
    {
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        using var dr = Dr.Client();
        foreach (var member in new[] { "db", "log" })
        {
            await home.CreateVolumeAsync(new CreateVolumeRequest(member, 8 << 20));
        }

        (await CliProcess.RunAsync("group", "create", "app", "db", "log", "--data", Home.DataDirectory)).AssertSuccess();
        await home.CreateReplicaAsync(new CreateReplicaRequest("app", "dr"));
        await home.SyncReplicaAsync("app");
        await dr.PromoteReplicaAsync("app");
        var demoted = (await CliProcess.RunAsync("replica", "demote", "app", "--data", Dr.DataDirectory)).AssertSuccess().StandardOutput;
        var incoming = await dr.ListIncomingAsync();
        var again = await home.SyncReplicaAsync("app");

        Assert.Contains("group app (db, log) is a replica again", demoted, StringComparison.Ordinal);
        Assert.Equal(2, incoming.Count);
        Assert.All(incoming, r => Assert.False(r.Promoted));
        Assert.All(incoming, r => Assert.Equal(1, r.Generation)); // the promotion here is remembered
        Assert.Null(again.LastError);
    }

    /// <summary>
    /// Random sequences (seeded: a failure repeats) of writes at home, snapshots and read-write
    /// export attempts at the DR site, syncs over a good or a breaking link, and a promotion:
    /// every replicated snapshot at the DR site hashes equal to home's snapshot of the same
    /// sequence, a read-write export of the replica is always refused, and the promoted image is
    /// one of home's snapshots. 12 steps by default, 60 with TIDEMARK_LONG=1.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task RandomOperations_TheReplicaIsAlwaysExactlyOneOfTheSourcesSnapshots(int seed)
    {
        var random = new Random(seed);
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        using var dr = Dr.Client();
        await home.CreateVolumeAsync(new CreateVolumeRequest("vol", 16 << 20));
        var live = await home.CreateExportAsync(new CreateExportRequest("vol", "vol", "nbd"));
        await home.CreateReplicaAsync(new CreateReplicaRequest("vol", "dr", CompressionLevel: 0));
        var synced = new Dictionary<string, string>(StringComparer.Ordinal); // replicated snapshot -> home's hash of it
        var first = await home.SyncReplicaAsync("vol");
        synced[first.LastSnapshot!] = await Sites.HashSnapshotAsync(Home, $"vol@{first.LastSnapshot}");
        var log = new List<string>();
        for (var step = 0; step < (Long ? 60 : 12); step++)
        {
            switch (random.Next(5))
            {
                case 0:
                case 1:
                    var offset = random.Next(16) << 20;
                    log.Add($"write home {offset}");
                    await Sites.WriteRandomAsync(live.Url!, offset, 1 << 20);
                    break;
                case 2:
                    log.Add("snapshot at dr");
                    await dr.CreateSnapshotAsync("vol", $"by-hand-{step}");
                    break;
                case 3:
                    log.Add("rw export at dr");
                    var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.CreateExportAsync(new CreateExportRequest("vol", $"rw-{step}", "nbd")));
                    Assert.Equal("read-only", refused.Code);
                    break;
                default:
                    var cut = random.Next(2) == 0;
                    log.Add(cut ? "sync over a breaking link" : "sync");
                    proxy.CutAfterBytes = 256 << 10;
                    proxy.CutEveryConnection = cut;
                    try
                    {
                        var done = await home.SyncReplicaAsync("vol");
                        synced[done.LastSnapshot!] = await Sites.HashSnapshotAsync(Home, $"vol@{done.LastSnapshot}");
                    }
                    catch (TidemarkApiException) when (cut)
                    {
                        // The replica keeps its last complete snapshot; checked below.
                    }

                    proxy.CutEveryConnection = false;
                    break;
            }

            var incoming = Assert.Single(await dr.ListIncomingAsync());
            Assert.True(synced.ContainsKey(incoming.LastSnapshot!), $"the replica's newest snapshot {incoming.LastSnapshot} is not one home sent; steps: {string.Join(", ", log)}");
            Assert.Equal(synced[incoming.LastSnapshot!], await Sites.HashSnapshotAsync(Dr, $"vol@{incoming.LastSnapshot}"));
        }

        var promoted = await dr.PromoteReplicaAsync("vol");
        await dr.CreateSnapshotAsync("vol", "promoted");
        Assert.Contains(await Sites.HashSnapshotAsync(Dr, "vol@promoted"), synced.Values);
        Assert.True(synced.ContainsKey(promoted.Snapshot.Name), $"promoted to {promoted.Snapshot.Name}; steps: {string.Join(", ", log)}");
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task ATransferLeftUnfinishedBeforeAFailBack_IsDropped_SoReplicationAfterItStartsFromTheSharedSnapshot()
    {
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        using var dr = Dr.Client();
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var live = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        await home.SyncReplicaAsync("mail");

        // A sync breaks off (its snapshot stays pending at home), then the disaster and the fail-back.
        await Sites.WriteRandomAsync(live.Url!, 0, 2 << 20);
        proxy.CutAfterBytes = 64 << 10;
        proxy.CutEveryConnection = true;
        await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("mail"));
        proxy.CutEveryConnection = false;
        await dr.PromoteReplicaAsync("mail");
        var drExport = await dr.CreateExportAsync(new CreateExportRequest("mail", "mail-dr", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 4m 64k", drExport.Url!)).AssertSuccess();
        await dr.DeleteExportAsync("mail-dr");
        await home.DeleteExportAsync("mail");
        await dr.ReverseReplicaAsync("mail", discardWritesAt: "home");
        await dr.SyncReplicaAsync("mail");
        await home.PromoteReplicaAsync("mail");

        // Home is the primary again: the next sync sends what home writes now, from the shared snapshot.
        var again = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x6b 8m 64k", again.Url!)).AssertSuccess();
        var forward = await home.SyncReplicaAsync("mail");

        Assert.Null(forward.LastError);
        Assert.True(forward.LastRangeBytes <= 1 << 20, $"{forward.LastRangeBytes} bytes of ranges for 64 KiB written");
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"mail@{forward.LastSnapshot}"), await Sites.HashSnapshotAsync(Dr, $"mail@{forward.LastSnapshot}"));
    }

    [Fact]
    public async Task ReplicaShow_WhileASyncWaitsToRetry_SaysSo_InsteadOfAPercentageAndAnEta()
    {
        using var proxy = await PairThroughProxyAsync();
        using var home = Home.Client();
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 32 << 20));
        var live = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await Sites.WriteRandomAsync(live.Url!, 0, 16 << 20);
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        proxy.CutEveryConnection = true;
        var sync = home.SyncReplicaAsync("mail");
        ReplicaSyncProgressDto? retrying = null;
        for (var i = 0; i < 200 && retrying is null && !sync.IsCompleted; i++)
        {
            retrying = (await home.GetReplicaAsync("mail")).Syncing is { Retrying: not null } s ? s : null;
            await Task.Delay(25);
        }

        var failed = await Assert.ThrowsAsync<TidemarkApiException>(() => sync);

        Assert.NotNull(retrying);
        Assert.Null(retrying.Percent);
        Assert.Null(retrying.EtaSeconds);
        Assert.Contains("retrying", retrying.Retrying, StringComparison.Ordinal);
        Assert.Contains("after 6 attempts", failed.Message, StringComparison.Ordinal);
    }
}
