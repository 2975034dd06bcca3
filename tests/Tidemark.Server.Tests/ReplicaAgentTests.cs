using System.Net;
using Tidemark.Agent;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The replication cycle's snapshot through the agents (ADR 0015, issue 19): two real servers and a
/// real agent listener (script hooks, no root; freezing a real file system is in the interop tests).
/// A replica that names hosts has its cycle's source snapshot cut with their applications quiesced
/// and labelled so; when an agent cannot quiesce, the replica's fallback decides: crash sends a
/// snapshot labelled crash, skip sends nothing and says why.
/// </summary>
public sealed class ReplicaAgentTests : TwoSiteTests
{
    [Fact]
    public async Task Sync_HostsAgentQuiesces_SourceSnapshotLabelledByIt_AgentSawQuiesceThenResume_VolumeAndGroup()
    {
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        using var home = Home.Client();
        using var dr = Dr.Client();
        var marks = Sites.Temp.Combine("marks");
        var identity = await home.GetIdentityAsync();
        await using var agent = await StartAgentAsync(identity.Fingerprint, new AgentScriptEntry("app", ["db", "data"], $"echo \"pre $TIDEMARK_VOLUMES\" >> {marks}", $"echo \"post $TIDEMARK_VOLUMES\" >> {marks}"));
        await home.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));
        await home.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        await home.CreateVolumeAsync(new CreateVolumeRequest("data", 16 << 20));
        await home.CreateVolumeAsync(new CreateVolumeRequest("wal", 16 << 20));
        await home.CreateGroupAsync(new CreateGroupRequest("pg", ["data", "wal"]));
        var created = (await CliProcess.RunAsync("replica", "create", "db", "--to", "dr", "--hosts", "db1", "--fallback", "skip", "--json", "--data", Home.DataDirectory)).AssertSuccess();
        await home.CreateReplicaAsync(new CreateReplicaRequest("pg", "dr", Hosts: ["db1"]));

        var synced = await home.SyncReplicaAsync("db");
        var groupSynced = await home.SyncReplicaAsync("pg");
        var source = Assert.Single(await home.ListSnapshotsAsync("db"));
        var wal = Assert.Single(await home.ListSnapshotsAsync("wal"));
        var atDr = await dr.ListSnapshotsAsync("db");
        var walAtDr = Assert.Single(await dr.ListSnapshotsAsync("wal"));
        var shown = (await CliProcess.RunAsync("replica", "show", "db", "--data", Home.DataDirectory)).AssertSuccess().StandardOutput;
        var events = await home.ListEventsAsync();
        var inUse = await Assert.ThrowsAsync<TidemarkApiException>(() => home.RemoveHostAsync("db1"));

        // The agent quiesced once per cycle, before the cut, and resumed after it.
        Assert.Equal(["pre db", "post db", "pre data wal", "post data wal"], await File.ReadAllLinesAsync(marks));
        Assert.Contains("\"fallback\": \"skip\"", created.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(["db1"], synced.Hosts!);
        Assert.Equal("skip", synced.Fallback);
        Assert.Equal(synced.LastSnapshot, source.Name);
        Assert.Equal("application (db1: script app)", source.Consistency);
        Assert.Equal(source.Consistency, synced.LastConsistency);
        Assert.Equal("crash", groupSynced.Fallback); // a replica's default
        Assert.Equal("application (db1: script app)", wal.Consistency); // every member of the group's cut
        Assert.Equal(wal.Consistency, groupSynced.LastConsistency);
        Assert.Equal([source.Id], atDr.Select(s => s.Id)); // the very snapshot went to the DR site
        Assert.Equal(source.Consistency, atDr[0].Consistency); // with its consistency (sent beside the stream)
        Assert.Equal((wal.Id, wal.Consistency), (walAtDr.Id, walAtDr.Consistency)); // a group member's too
        Assert.Contains("agents: db1 quiesce around each sync's snapshot (fallback skip)", shown, StringComparison.Ordinal);
        Assert.Contains($"consistency of {source.Name}: application (db1: script app)", shown, StringComparison.Ordinal);
        Assert.Contains(events, e => e.Kind == "snapshot.consistency" && e.Subject == source.Address && e.Actor == "replica:db" && e.Outcome == "ok");
        Assert.Contains(events, e => e.Kind == "replica.sync" && e.Subject == "db" && e.Message.EndsWith("; consistency: application (db1: script app)", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.Conflict, inUse.Status);
        Assert.Contains("replicas db, pg quiesce host db1", inUse.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sync_AgentDown_SkipSendsNothingWithStatusAndEvent_ThenCrashSendsItLabelled()
    {
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        using var home = Home.Client();
        using var dr = Dr.Client();
        await home.AddHostAsync(new AddHostRequest("down", $"127.0.0.1:{FreePort.Find()}", new string('a', 64)));
        await home.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        var unknownHost = await Assert.ThrowsAsync<TidemarkApiException>(() => home.CreateReplicaAsync(new CreateReplicaRequest("db", "dr", Hosts: ["nobody"])));
        var badFallback = await Assert.ThrowsAsync<TidemarkApiException>(() => home.CreateReplicaAsync(new CreateReplicaRequest("db", "dr", Hosts: ["down"], Fallback: "maybe")));
        await home.CreateReplicaAsync(new CreateReplicaRequest("db", "dr", Hosts: ["down"], Fallback: "skip"));

        var skipped = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("db"));
        var afterSkip = await home.GetReplicaAsync("db");
        var sourceAfterSkip = await home.ListSnapshotsAsync("db");
        var drAfterSkip = await dr.ListIncomingAsync();
        (await CliProcess.RunAsync("replica", "update", "db", "--fallback", "crash", "--data", Home.DataDirectory)).AssertSuccess();
        var crash = await home.SyncReplicaAsync("db");
        var source = Assert.Single(await home.ListSnapshotsAsync("db"));
        var atDr = await dr.ListSnapshotsAsync("db");
        var events = await home.ListEventsAsync();
        var cleared = (await CliProcess.RunAsync("replica", "update", "db", "--hosts", "", "--json", "--data", Home.DataDirectory)).AssertSuccess().StandardOutput;
        await home.RemoveHostAsync("down"); // no replica quiesces it any more

        Assert.Equal("not-found", unknownHost.Code);
        Assert.Contains("no host nobody", unknownHost.Message, StringComparison.Ordinal);
        Assert.Contains("fallback must be", badFallback.Message, StringComparison.Ordinal);
        Assert.Contains("replication of db to dr skipped: not every host could quiesce (", skipped.Message, StringComparison.Ordinal);
        Assert.Contains("down", skipped.Message, StringComparison.Ordinal);
        Assert.Contains("skipped (fallback skip): not every host could quiesce", afterSkip.LastError, StringComparison.Ordinal);
        Assert.Contains("the next sync tries again", afterSkip.LastError, StringComparison.Ordinal);
        Assert.Null(afterSkip.LastSnapshot);
        Assert.Empty(sourceAfterSkip);
        Assert.Empty(drAfterSkip);
        Assert.Contains(events, e => e.Kind == "replica.sync" && e.Subject == "db" && e.Outcome == "skipped");
        Assert.Contains(events, e => e.Kind == "agent.quiesce" && e.Subject == "down" && e.Actor == "replica:db" && e.Outcome == "failed");

        Assert.Null(crash.LastError);
        Assert.Equal("crash", crash.Fallback);
        Assert.StartsWith("crash (quiesce failed, taken crash-consistent: ", source.Consistency, StringComparison.Ordinal);
        Assert.Equal(source.Consistency, crash.LastConsistency);
        Assert.Equal([source.Id], atDr.Select(s => s.Id));
        Assert.Equal(source.Consistency, atDr[0].Consistency); // labelled crash, with the reason, at the DR site too
        Assert.Contains(events, e => e.Kind == "snapshot.consistency" && e.Subject == source.Address && e.Actor == "replica:db" && e.Outcome == "fallback");
        Assert.Contains(events, e => e.Kind == "replica.sync" && e.Subject == "db" && e.Outcome == "ok" && e.Message.Contains("; consistency: crash (quiesce failed", StringComparison.Ordinal));
        Assert.Contains("\"hosts\": null", cleared, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Sync_TransferBrokenOff_NextSyncContinuesIt_WithoutQuiescingAgain_AndKeepsItsLabel()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        var homeId = await home.GetIdentityAsync();
        var drId = await dr.GetIdentityAsync();
        using var proxy = new CuttingProxy(IPEndPoint.Parse(drId.ReplicationAddress!), cutAfterBytes: 1 << 20, cuts: 0) { CutEveryConnection = true };
        await home.AddPartnerAsync(new AddPartnerRequest("dr", proxy.Address, drId.Fingerprint));
        await dr.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint));
        var marks = Sites.Temp.Combine("marks");
        await using var agent = await StartAgentAsync(homeId.Fingerprint, new AgentScriptEntry("app", ["db"], $"echo pre >> {marks}", $"echo post >> {marks}"));
        await home.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));
        await home.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        var live = await home.CreateExportAsync(new CreateExportRequest("db", "db", "nbd"));
        await Sites.WriteRandomAsync(live.Url!, 0, 4 << 20);
        await home.CreateReplicaAsync(new CreateReplicaRequest("db", "dr", Hosts: ["db1"]));

        // Every attempt of the first sync breaks off after 1 MiB: its snapshot waits for the next sync.
        var broken = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("db"));
        var pending = Assert.Single(await home.ListSnapshotsAsync("db"));
        proxy.CutEveryConnection = false;
        var continued = await home.SyncReplicaAsync("db");
        var events = await home.ListEventsAsync(kind: "replica.sync");

        Assert.Contains("failed after 6 attempts", broken.Message, StringComparison.Ordinal);
        Assert.Equal(["pre", "post"], await File.ReadAllLinesAsync(marks)); // one quiesce, for the one cut
        Assert.Equal(pending.Name, continued.LastSnapshot);
        Assert.Equal("application (db1: script app)", pending.Consistency);
        Assert.Equal(pending.Consistency, continued.LastConsistency);
        Assert.Contains(events, e => e.Outcome == "ok" && e.Message.Contains("(continuing the transfer an earlier sync left unfinished)", StringComparison.Ordinal) && e.Message.EndsWith("; consistency: application (db1: script app)", StringComparison.Ordinal));
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"db@{pending.Name}"), await Sites.HashSnapshotAsync(Dr, $"db@{pending.Name}"));
        Assert.Equal(pending.Consistency, Assert.Single(await dr.ListSnapshotsAsync("db")).Consistency); // sent again with the resumed stream
    }

    private async Task<AgentHost> StartAgentAsync(string serverFingerprint, params AgentScriptEntry[] scripts)
    {
        var directory = Sites.Temp.Combine($"agent-{Guid.NewGuid():N}");
        new AgentConfig
        {
            Name = "db1",
            Listen = "127.0.0.1:0",
            Servers = [new AgentServerEntry(serverFingerprint, DateTimeOffset.UtcNow)],
            Scripts = scripts,
        }.Save(directory);
        return await AgentHost.StartAsync(directory);
    }
}
