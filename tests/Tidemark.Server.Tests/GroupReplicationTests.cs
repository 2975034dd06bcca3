using System.Security.Cryptography;
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
            await WriteRandomAsync(exports[member], 0, 4 << 20);
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
            await WriteRandomAsync(exports[member], 8 << 20, 256 << 10);
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

    private async Task WriteRandomAsync(string url, long offset, int length)
    {
        var file = _sites.Temp.Combine($"random-{Guid.NewGuid():N}.bin");
        await File.WriteAllBytesAsync(file, RandomNumberGenerator.GetBytes(length));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -s {file} {offset} {length}", url)).AssertSuccess();
        File.Delete(file);
    }

    private Task<string> HashAsync(ServerProcess server, string snapshot) => _sites.HashSnapshotAsync(server, snapshot);
}
