using System.Net;
using System.Net.Sockets;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Disaster and return with two real servers: replicate, lose the primary's last writes to a
/// "disaster", promote at the DR site and work there, send it back (reverse), fail back, and
/// replicate in the original direction again; every step checked by hashing snapshots on both sides.
/// </summary>
public sealed class FailBackTests : TwoSiteTests
{

    [Fact]
    public async Task PromoteReverseAndPromoteAtHome_SendsOnlyChanges_KeepsTheRevertedWrites_AndEndsIdenticalBothWays()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 32 << 20));
        var homeExport = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await Sites.WriteRandomAsync(homeExport.Url!, 0, 8 << 20);
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var initial = await home.SyncReplicaAsync("mail");

        // The disaster: home writes 1 MiB that never reaches the DR site, then goes dark.
        await Sites.WriteRandomAsync(homeExport.Url!, 16 << 20, 1 << 20);
        await home.CreateSnapshotAsync("mail", "after-last-sync");
        var lostHash = await Sites.HashSnapshotAsync(Home, "mail@after-last-sync");
        await home.DeleteSnapshotAsync("mail@after-last-sync");

        // The DR site takes over and works.
        var promoted = await dr.PromoteReplicaAsync("mail");
        var drExport = await dr.CreateExportAsync(new CreateExportRequest("mail", "mail-dr", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 4M 64k", drExport.Url!)).AssertSuccess();

        // Home is back, but its application still has the volume exported read-write: refused, nothing changed.
        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.ReverseReplicaAsync("mail"));
        Assert.Contains("exported read-write", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(await home.ListSnapshotsAsync("mail"), s => s.Name.StartsWith("pre-rollback", StringComparison.Ordinal));
        await home.DeleteExportAsync("mail");

        // Split brain (home wrote after the common snapshot too): refused until told which writes go.
        var splitBrain = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.ReverseReplicaAsync("mail"));
        Assert.Contains("split brain", splitBrain.Message, StringComparison.Ordinal);
        Assert.Contains("--discard-writes-at home", splitBrain.Message, StringComparison.Ordinal);
        Assert.Equal(lostHash, await Sites.HashSnapshotAsync(Home, $"mail@{(await home.CreateSnapshotAsync("mail", "untouched")).Name}"));
        await home.DeleteSnapshotAsync("mail@untouched");

        var reversed = (await CliProcess.RunAsync("replica", "reverse", "mail", "--discard-writes-at", "home", "--json", "--data", Dr.DataDirectory)).AssertSuccess().StandardOutput;
        var back = await dr.GetReplicaAsync("mail");
        var homeSnapshots = await home.ListSnapshotsAsync("mail");
        var kept = Assert.Single(homeSnapshots, s => s.Name.StartsWith("pre-rollback", StringComparison.Ordinal));
        Assert.Contains(kept.Address, back.DiscardedWrites, StringComparison.Ordinal);
        Assert.Contains(await home.ListEventsAsync(kind: "replica.split-brain"), e => e.Message.Contains(kept.Address, StringComparison.Ordinal));
        Assert.Contains("\"state\": \"reverse\"", reversed, StringComparison.Ordinal);
        Assert.Equal(("home", "mail"), (back.Partner, back.RemoteVolume));
        Assert.True(back.LastRangeBytes <= 1 << 20, $"the reverse sent {back.LastRangeBytes} bytes of ranges for 64 KiB changed at the DR site");
        Assert.Equal(lostHash, await Sites.HashSnapshotAsync(Home, kept.Address)); // the reverted writes are kept
        Assert.Equal(await Sites.HashSnapshotAsync(Dr, $"mail@{back.LastSnapshot}"), await Sites.HashSnapshotAsync(Home, $"mail@{back.LastSnapshot}"));
        var held = await home.GetReplicaAsync("mail");
        Assert.Equal("suspended", held.State);
        Assert.Contains("replica promote mail", held.SuspendedReason, StringComparison.Ordinal);
        await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("mail"));

        // More work at the DR site follows home incrementally; then the planned switch back.
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x6b 8M 128k", drExport.Url!)).AssertSuccess();
        await dr.DeleteExportAsync("mail-dr");
        var final = await dr.SyncReplicaAsync("mail");
        var promoteAtHome = (await CliProcess.RunAsync("replica", "promote", "mail", "--data", Home.DataDirectory)).AssertSuccess().StandardOutput;

        Assert.True(final.LastRangeBytes <= 1 << 20, $"the final sync sent {final.LastRangeBytes} bytes of ranges for 128 KiB changed");
        Assert.Contains("dr made mail a replica again", promoteAtHome, StringComparison.Ordinal);
        Assert.Empty(await dr.ListReplicasAsync());
        var incomingAtDr = Assert.Single(await dr.ListIncomingAsync());
        Assert.False(incomingAtDr.Promoted);
        Assert.Equal(final.LastSnapshot, incomingAtDr.LastSnapshot); // what it holds now, not the last snapshot received before the disaster
        Assert.Equal("active", (await home.GetReplicaAsync("mail")).State);

        // Home is the primary again and replicates in the original direction, incrementally.
        var again = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x6b 8M 128k", "-c", "write -P 0x7c 12M 64k", again.Url!)).AssertSuccess();
        var forward = await home.SyncReplicaAsync("mail");

        Assert.Null(forward.LastError);
        Assert.True(forward.LastRangeBytes <= 1 << 20, $"replication after fail-back sent {forward.LastRangeBytes} bytes of ranges for 64 KiB changed");
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"mail@{forward.LastSnapshot}"), await Sites.HashSnapshotAsync(Dr, $"mail@{forward.LastSnapshot}"));
        Assert.NotNull(initial.LastSnapshot);
        Assert.Null(promoted.Note);
        Assert.True((await home.VerifyAsync()).Clean);
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task Reverse_OfAVolumeThatIsNotAPromotedReplica_IsRefusedClearly()
    {
        using var dr = Dr.Client();
        await dr.CreateVolumeAsync(new CreateVolumeRequest("local", 16 << 20));

        var notIncoming = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.ReverseReplicaAsync("local"));
        var notPromoted = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.DemoteReplicaAsync("local"));

        Assert.Equal("not-found", notIncoming.Code);
        Assert.Contains("only a promoted replica", notIncoming.Message, StringComparison.Ordinal);
        Assert.Equal("invalid-argument", notPromoted.Code);
    }

    [Fact]
    public async Task ReplicaShow_AtTheDrSite_SaysBeforeAReverseWhetherHomeWroteAfterTheCommonSnapshot_AndNeverHangsOnHome()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var synced = await home.SyncReplicaAsync("mail");
        await dr.PromoteReplicaAsync("mail");

        var clean = await dr.GetReplicaAsync("mail");

        var homeExport = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x6b 1m 8k", homeExport.Url!)).AssertSuccess();
        var written = (await CliProcess.RunAsync("replica", "show", "mail", "--data", Dr.DataDirectory)).AssertSuccess().StandardOutput;

        // Home answers nothing (a listener that never speaks TLS): show still answers, saying so.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var drPartners = await dr.ListPartnersAsync();
        var homeFingerprint = Assert.Single(drPartners, p => p.Name == "home").Fingerprint;
        await dr.RemovePartnerAsync("home");
        await dr.AddPartnerAsync(new AddPartnerRequest("home", silent.LocalEndpoint.ToString()!, homeFingerprint));
        var silentShow = await dr.GetReplicaAsync("mail");

        // Home is down: the same.
        await Home.StopAsync();
        await dr.RemovePartnerAsync("home");
        await dr.AddPartnerAsync(new AddPartnerRequest("home", $"127.0.0.1:{FreePort.FindStable()}", homeFingerprint));
        var down = await dr.GetReplicaAsync("mail");

        Assert.Equal("promoted", clean.State);
        Assert.Equal(("home", "mail"), (clean.Partner, clean.RemoteVolume));
        Assert.Contains($"home has not written to mail since {synced.LastSnapshot}", clean.PartnerWrites, StringComparison.Ordinal);
        Assert.Contains("split brain", written, StringComparison.Ordinal);
        Assert.Contains(synced.LastSnapshot!, written, StringComparison.Ordinal);
        Assert.Contains("8,192 bytes changed", written, StringComparison.Ordinal);
        Assert.Contains("--discard-writes-at home", written, StringComparison.Ordinal);
        Assert.StartsWith("unknown, home unreachable", silentShow.PartnerWrites, StringComparison.Ordinal);
        Assert.StartsWith("unknown, home unreachable", down.PartnerWrites, StringComparison.Ordinal);
        Assert.Equal("promoted", down.State);
    }
}
