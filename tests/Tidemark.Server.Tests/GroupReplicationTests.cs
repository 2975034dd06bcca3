using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>A group of volumes replicated as one unit between two real servers: cut together, committed together, promoted together.</summary>
public sealed class GroupReplicationTests : IAsyncLifetime
{
    private TwoServers _sites = null!;

    public async Task InitializeAsync() => _sites = await TwoServers.StartAsync("--replication-retry-delay", "100ms");

    public async Task DisposeAsync() => await _sites.DisposeAsync();

    [Fact]
    public async Task Group_ReplicatesAsOneUnit_NeverHalfCommitted_AndPromotesTogether()
    {
        using var primary = _sites.Primary.Client();
        using var dr = _sites.Dr.Client();
        await Pairing.PairAsync(_sites.Primary, "dr", _sites.Dr, "primary");
        string[] members = ["maildb", "maillog"];
        var exports = new Dictionary<string, string>();
        foreach (var member in members)
        {
            await primary.CreateVolumeAsync(new CreateVolumeRequest(member, 16 << 20));
            exports[member] = (await primary.CreateExportAsync(new CreateExportRequest(member, member, "nbd"))).Url!;
            await _sites.WriteRandomAsync(exports[member], 0, 4 << 20);
        }

        (await CliProcess.RunAsync("group", "create", "mail", "maildb", "maillog", "--data", _sites.Primary.DataDirectory)).AssertSuccess();
        (await CliProcess.RunAsync("replica", "create", "mail", "--to", "dr", "--data", _sites.Primary.DataDirectory)).AssertSuccess();
        var first = await primary.SyncReplicaAsync("mail");

        Assert.Equal(members, first.GroupMembers);
        foreach (var member in members)
        {
            Assert.Equal(await HashAsync(_sites.Primary, $"{member}@{first.LastSnapshot}"), await HashAsync(_sites.Dr, $"{member}@{first.LastSnapshot}"));
        }

        // One member cannot take the next group snapshot: the others must not take it either.
        foreach (var member in members)
        {
            await _sites.WriteRandomAsync(exports[member], 8 << 20, 256 << 10);
        }

        await dr.PromoteReplicaAsync("maillog");
        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => primary.SyncReplicaAsync("mail"));
        Assert.Contains("promoted", refused.Message, StringComparison.Ordinal);
        foreach (var member in members)
        {
            Assert.Equal([first.LastSnapshot], (await dr.ListSnapshotsAsync(member)).Select(s => s.Name));
        }

        await dr.DemoteReplicaAsync("maillog");
        var second = await primary.SyncReplicaAsync("mail");

        Assert.Null(second.LastError);
        Assert.True(second.LastRangeBytes <= 2 << 20, $"the incremental group sync covered {second.LastRangeBytes} bytes for 512 KiB changed");
        foreach (var member in members)
        {
            Assert.Equal([first.LastSnapshot, second.LastSnapshot], (await dr.ListSnapshotsAsync(member)).Select(s => s.Name));
            Assert.Equal(await HashAsync(_sites.Primary, $"{member}@{second.LastSnapshot}"), await HashAsync(_sites.Dr, $"{member}@{second.LastSnapshot}"));
            Assert.Equal([second.LastSnapshot], (await primary.ListSnapshotsAsync(member)).Select(s => s.Name)); // the previous base is gone
        }

        var incoming = await dr.ListIncomingAsync();
        Assert.All(incoming, r => Assert.Equal("mail", r.Group));

        // Disaster: the group is promoted as one unit at the DR site.
        var promoted = await dr.PromoteReplicaAsync("mail");
        Assert.Contains("maildb", promoted.Note, StringComparison.Ordinal);
        Assert.Contains("maillog", promoted.Note, StringComparison.Ordinal);
        Assert.All(await dr.ListIncomingAsync(), r => Assert.True(r.Promoted));
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task Group_FailsBackAsOneUnit_AndReplicatesHomeAgain()
    {
        using var home = _sites.Primary.Client();
        using var dr = _sites.Dr.Client();
        await Pairing.PairAsync(_sites.Primary, "dr", _sites.Dr, "home");
        string[] members = ["db", "log"];
        foreach (var member in members)
        {
            await home.CreateVolumeAsync(new CreateVolumeRequest(member, 16 << 20));
            await _sites.WriteRandomAsync((await home.CreateExportAsync(new CreateExportRequest(member, member, "nbd"))).Url!, 0, 2 << 20);
        }

        await home.CreateGroupAsync(new CreateGroupRequest("app", members));
        await home.CreateReplicaAsync(new CreateReplicaRequest("app", "dr"));
        await home.SyncReplicaAsync("app");
        foreach (var member in members)
        {
            await home.DeleteExportAsync(member);
        }

        // The DR site takes over the group and works on both members.
        await dr.PromoteReplicaAsync("app");
        foreach (var member in members)
        {
            var export = await dr.CreateExportAsync(new CreateExportRequest(member, $"{member}-dr", "nbd"));
            await _sites.WriteRandomAsync(export.Url!, 4 << 20, 128 << 10);
            await dr.DeleteExportAsync($"{member}-dr");
        }

        // Home is back: the group goes back as one unit, then home becomes the primary again.
        var back = await dr.ReverseReplicaAsync("app");
        var held = await home.GetReplicaAsync("app");
        var promotedHome = await home.PromoteReplicaAsync("app");

        Assert.Equal("reverse", back.State);
        Assert.Equal(members, back.GroupMembers);
        Assert.True(back.LastRangeBytes <= 1 << 20, $"the group fail-back covered {back.LastRangeBytes} bytes for 256 KiB changed");
        foreach (var member in members)
        {
            Assert.Equal(await HashAsync(_sites.Dr, $"{member}@{back.LastSnapshot}"), await HashAsync(_sites.Primary, $"{member}@{back.LastSnapshot}"));
        }

        Assert.Equal("suspended", held.State);
        Assert.Contains("dr made db, log replicas again", promotedHome.Note, StringComparison.Ordinal);
        Assert.Empty(await dr.ListReplicasAsync());
        Assert.All(await dr.ListIncomingAsync(), r => Assert.False(r.Promoted));

        // And the original direction runs again, as a group.
        var again = await home.CreateExportAsync(new CreateExportRequest("log", "log", "nbd"));
        await _sites.WriteRandomAsync(again.Url!, 8 << 20, 64 << 10);
        var forward = await home.SyncReplicaAsync("app");
        Assert.Null(forward.LastError);
        Assert.True(forward.LastRangeBytes <= 1 << 20, $"the sync after fail-back covered {forward.LastRangeBytes} bytes for 64 KiB changed");
        foreach (var member in members)
        {
            Assert.Equal(await HashAsync(_sites.Primary, $"{member}@{forward.LastSnapshot}"), await HashAsync(_sites.Dr, $"{member}@{forward.LastSnapshot}"));
        }
    }

    [Fact]
    public async Task Group_SplitBrainFailBack_DiscardingHomesWrites_NamesEachMembersKeptSnapshotInReplicaShow()
    {
        using var home = _sites.Primary.Client();
        using var dr = _sites.Dr.Client();
        await Pairing.PairAsync(_sites.Primary, "dr", _sites.Dr, "home");
        string[] members = ["db", "log"];
        foreach (var member in members)
        {
            await home.CreateVolumeAsync(new CreateVolumeRequest(member, 16 << 20));
        }

        await home.CreateGroupAsync(new CreateGroupRequest("app", members));
        await home.CreateReplicaAsync(new CreateReplicaRequest("app", "dr"));
        await home.SyncReplicaAsync("app");
        await dr.PromoteReplicaAsync("app");

        // Both sites write to both members after the common snapshot.
        var lost = new Dictionary<string, string>();
        foreach (var member in members)
        {
            var atHome = await home.CreateExportAsync(new CreateExportRequest(member, member, "nbd"));
            await _sites.WriteRandomAsync(atHome.Url!, 0, 64 << 10);
            await home.DeleteExportAsync(member);
            lost[member] = await HashAsync(_sites.Primary, $"{member}@{(await home.CreateSnapshotAsync(member, "lost")).Name}");
            await home.DeleteSnapshotAsync($"{member}@lost");
            var atDr = await dr.CreateExportAsync(new CreateExportRequest(member, $"{member}-dr", "nbd"));
            await _sites.WriteRandomAsync(atDr.Url!, 1 << 20, 64 << 10);
            await dr.DeleteExportAsync($"{member}-dr");
        }

        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.ReverseReplicaAsync("app"));
        await dr.ReverseReplicaAsync("app", discardWritesAt: "home");
        var shown = await dr.GetReplicaAsync("app");

        Assert.Contains("split brain", refused.Message, StringComparison.Ordinal);
        Assert.NotNull(shown.DiscardedWrites);
        foreach (var member in members)
        {
            var kept = Assert.Single(await home.ListSnapshotsAsync(member), s => s.Name.StartsWith("pre-rollback", StringComparison.Ordinal));
            Assert.Contains(kept.Address, shown.DiscardedWrites, StringComparison.Ordinal);
            Assert.Equal(lost[member], await HashAsync(_sites.Primary, kept.Address));
        }
    }


    private Task<string> HashAsync(ServerProcess server, string snapshot) => _sites.HashSnapshotAsync(server, snapshot);
}
