using System.Net;
using System.Security.Cryptography;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Replicas built on a copy that shares no snapshot with the source (a disk copy used as a seed, a
/// replica whose base was lost, fail-back after the common snapshot is gone): a hash scan of both
/// copies finds the blocks that differ and only those are sent; the replica ends identical.
/// </summary>
public sealed class HashScanTests : TwoSiteTests
{
    private const long Size = 48 << 20;


    [Fact]
    public async Task SeedFromADiskCopy_SendsOnlyTheDifferences_RefusedWithoutSeed_AndEndsIdentical()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", Size));
        var homeExport = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await Sites.WriteRandomAsync(homeExport.Url!, 0, 20 << 20);

        // The seed: a raw copy of the volume carried to the DR site and written into a new volume there.
        await home.CreateSnapshotAsync("mail", "shipped");
        var image = Sites.Temp.Combine("shipped.raw");
        var shipped = await home.CreateExportAsync(new CreateExportRequest("mail@shipped", "shipped", "nbd"));
        (await ProcessRunner.RunAsync("nbdcopy", shipped.Url!, image)).AssertSuccess();
        await home.DeleteExportAsync("shipped");
        await dr.CreateVolumeAsync(new CreateVolumeRequest("mail", Size));
        var seedExport = await dr.CreateExportAsync(new CreateExportRequest("mail", "seed", "nbd"));
        (await ProcessRunner.RunAsync("nbdcopy", image, seedExport.Url!)).AssertSuccess();

        // Meanwhile both copies drift: home writes scattered blocks, a run, zeros and into a hole;
        // the seed got a stray write of its own (it must be reverted).
        (await ProcessRunner.RunAsync(
            "qemu-io",
            "-f",
            "raw",
            "-c",
            "write -P 0x11 4k 4k",
            "-c",
            "write -P 0x22 5m 4k",
            "-c",
            "write -P 0x33 9m 64k",
            "-c",
            "write -z 12m 1m",
            "-c",
            "write -P 0x44 40m 8k",
            homeExport.Url!)).AssertSuccess();
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x55 17m 4k", seedExport.Url!)).AssertSuccess();
        await dr.DeleteExportAsync("seed");
        var seedHash = await HashLiveAsync(Dr, dr, "mail");

        // Without --seed the DR site's volume is somebody's data: refused, untouched.
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("mail"));
        Assert.Contains("--seed", refused.Message, StringComparison.Ordinal);
        Assert.Equal(seedHash, await HashLiveAsync(Dr, dr, "mail"));
        await home.DeleteReplicaAsync("mail");

        // With --seed but without the DR site's consent: refused too, saying what to run there.
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr", Seed: true));
        var noConsent = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("mail"));
        Assert.Contains("replica accept mail --from home", noConsent.Message, StringComparison.Ordinal);
        Assert.Equal(seedHash, await HashLiveAsync(Dr, dr, "mail"));
        var accepted = (await CliProcess.RunAsync("replica", "accept", "mail", "--from", "home", "--json", "--data", Dr.DataDirectory)).AssertSuccess().StandardOutput;
        var keptSeed = Assert.Single(await dr.ListSnapshotsAsync("mail"), s => s.Name.StartsWith("pre-seed-", StringComparison.Ordinal));
        Assert.Contains(keptSeed.Name, accepted, StringComparison.Ordinal);
        Assert.Contains(await dr.ListEventsAsync(kind: "replica.accept"), e => e.Message.Contains(keptSeed.Address, StringComparison.Ordinal));
        var seeded = await home.SyncReplicaAsync("mail");
        Assert.Equal(seedHash, await Sites.HashSnapshotAsync(Dr, keptSeed.Address)); // the DR site's data is kept

        // Changed: 4K + 4K + 64K + 1M + 8K at home, 4K on the seed (ranges are whole 4 KiB blocks).
        Assert.Null(seeded.LastError);
        Assert.Equal(Size, seeded.LastScannedBytes);
        Assert.InRange(seeded.LastRangeBytes, (1 << 20) + (84 << 10), (1 << 20) + (84 << 10));
        Assert.True(seeded.LastBytesSent < 512 << 10, $"{seeded.LastBytesSent} bytes on the wire for 84 KiB of random data and 1 MiB of zeros");
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"mail@{seeded.LastSnapshot}"), await Sites.HashSnapshotAsync(Dr, $"mail@{seeded.LastSnapshot}"));
        Assert.DoesNotContain(await dr.ListSnapshotsAsync("mail"), s => s.Name.StartsWith("hashscan-", StringComparison.Ordinal));

        // From now on an ordinary replica: incremental, no scan.
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x66 30m 4k", homeExport.Url!)).AssertSuccess();
        var next = await home.SyncReplicaAsync("mail");
        Assert.Equal(4096, next.LastRangeBytes);
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"mail@{next.LastSnapshot}"), await Sites.HashSnapshotAsync(Dr, $"mail@{next.LastSnapshot}"));
        Assert.True((await home.VerifyAsync()).Clean);
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task ReplicaRecreatedAfterItsBaseWasLost_IsBroughtUpToDateByHashScan()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("db", Size));
        var export = await home.CreateExportAsync(new CreateExportRequest("db", "db", "nbd"));
        await Sites.WriteRandomAsync(export.Url!, 0, 16 << 20);
        await home.CreateReplicaAsync(new CreateReplicaRequest("db", "dr"));
        var first = await home.SyncReplicaAsync("db");

        // The relationship and its base snapshot are deleted at home; later it is created again.
        await home.DeleteReplicaAsync("db");
        await home.DeleteSnapshotAsync($"db@{first.LastSnapshot}");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x77 2m 64k", export.Url!)).AssertSuccess();
        await home.CreateReplicaAsync(new CreateReplicaRequest("db", "dr"));
        var again = await home.SyncReplicaAsync("db");

        Assert.Equal(Size, again.LastScannedBytes);
        Assert.Equal(64 << 10, again.LastRangeBytes);
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"db@{again.LastSnapshot}"), await Sites.HashSnapshotAsync(Dr, $"db@{again.LastSnapshot}"));
    }

    [Fact]
    public async Task FailBackWithoutASharedSnapshot_HomeWroteAfterIt_IsSplitBrain_UntilDiscarded_ThenKeepsHomesStateAndEndsIdentical()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", Size));
        var homeExport = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await Sites.WriteRandomAsync(homeExport.Url!, 0, 16 << 20);
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var synced = await home.SyncReplicaAsync("mail");

        // Disaster: DR promotes and works; home, cut off, kept writing and lost its replication
        // state and snapshots (say it was restored from an old backup of its configuration).
        await dr.PromoteReplicaAsync("mail");
        var drExport = await dr.CreateExportAsync(new CreateExportRequest("mail", "mail-dr", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 3m 64k", drExport.Url!)).AssertSuccess();
        await dr.DeleteExportAsync("mail-dr");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x6b 7m 4k", homeExport.Url!)).AssertSuccess();
        // Home also wrote where DR did: only a comparison with the common snapshot tells it apart.
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x7c 3m 4k", homeExport.Url!)).AssertSuccess();
        await home.DeleteExportAsync("mail");
        await home.DeleteReplicaAsync("mail");
        await home.DeleteSnapshotAsync($"mail@{synced.LastSnapshot}");
        var homeBefore = await HashLiveAsync(Home, home, "mail");

        // Home wrote after the common snapshot: the same split-brain rule as with a shared snapshot.
        var splitBrain = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.ReverseReplicaAsync("mail"));
        Assert.Contains("split brain", splitBrain.Message, StringComparison.Ordinal);
        Assert.Contains(synced.LastSnapshot!, splitBrain.Message, StringComparison.Ordinal);
        Assert.Contains("2 granules", splitBrain.Message, StringComparison.Ordinal);
        Assert.Contains("--discard-writes-at home", splitBrain.Message, StringComparison.Ordinal);
        Assert.Contains(await home.ListEventsAsync(kind: "replica.split-brain"), e => e.Outcome == "refused" && e.Message.Contains("split brain", StringComparison.Ordinal));
        Assert.Equal(homeBefore, await HashLiveAsync(Home, home, "mail"));
        Assert.Null((await dr.GetReplicaAsync("mail")).DiscardedWrites);

        var back = await dr.ReverseReplicaAsync("mail", discardWritesAt: "home");

        // Both sides' changes since the lost snapshot differ: DR's 64 KiB and home's 4 KiB at 7m.
        Assert.Equal(Size, back.LastScannedBytes);
        Assert.Equal((64 << 10) + 4096, back.LastRangeBytes);
        Assert.Equal(await Sites.HashSnapshotAsync(Dr, $"mail@{back.LastSnapshot}"), await Sites.HashSnapshotAsync(Home, $"mail@{back.LastSnapshot}"));
        var kept = Assert.Single(await home.ListSnapshotsAsync("mail"), s => s.Name.StartsWith("pre-failback-", StringComparison.Ordinal));
        Assert.Equal(homeBefore, await Sites.HashSnapshotAsync(Home, kept.Address));
        Assert.Contains(kept.Address, back.DiscardedWrites, StringComparison.Ordinal);
        Assert.Contains(await home.ListEventsAsync(kind: "replica.split-brain"), e => e.Outcome != "refused" && e.Message.Contains(kept.Address, StringComparison.Ordinal) && e.Message.Contains(synced.LastSnapshot!, StringComparison.Ordinal));
        Assert.True((await home.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task FailBackWithoutASharedSnapshot_HomeUnchangedSinceIt_NeedsNoConsent()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", Size));
        var homeExport = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await Sites.WriteRandomAsync(homeExport.Url!, 0, 16 << 20);
        await home.DeleteExportAsync("mail");
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var synced = await home.SyncReplicaAsync("mail");

        // DR promotes and works; home wrote nothing more but lost the common snapshot.
        await dr.PromoteReplicaAsync("mail");
        var drExport = await dr.CreateExportAsync(new CreateExportRequest("mail", "mail-dr", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 3m 64k", drExport.Url!)).AssertSuccess();
        await dr.DeleteExportAsync("mail-dr");
        await home.DeleteReplicaAsync("mail");
        await home.DeleteSnapshotAsync($"mail@{synced.LastSnapshot}");

        var back = await dr.ReverseReplicaAsync("mail");

        Assert.Equal(64 << 10, back.LastRangeBytes);
        Assert.Null(back.DiscardedWrites);
        Assert.Empty(await home.ListEventsAsync(kind: "replica.split-brain"));
        Assert.Equal(await Sites.HashSnapshotAsync(Dr, $"mail@{back.LastSnapshot}"), await Sites.HashSnapshotAsync(Home, $"mail@{back.LastSnapshot}"));
    }

    [Fact]
    public async Task SeededSync_ThroughALinkThatBreaks_ResumesTheDifferencesAndEndsIdentical()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        var homeId = await home.GetIdentityAsync();
        var drId = await dr.GetIdentityAsync();
        using var proxy = new CuttingProxy(IPEndPoint.Parse(drId.ReplicationAddress!), cutAfterBytes: 3 << 20, cuts: 2);
        await home.AddPartnerAsync(new AddPartnerRequest("dr", proxy.Address, drId.Fingerprint));
        await dr.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint));
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", Size));
        await dr.CreateVolumeAsync(new CreateVolumeRequest("mail", Size));
        var homeExport = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        var seedExport = await dr.CreateExportAsync(new CreateExportRequest("mail", "seed", "nbd"));
        var same = Sites.Temp.Combine("same.bin");
        await File.WriteAllBytesAsync(same, RandomNumberGenerator.GetBytes(8 << 20));
        foreach (var url in new[] { homeExport.Url!, seedExport.Url! })
        {
            (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -s {same} 0 {8 << 20}", url)).AssertSuccess();
        }

        await dr.DeleteExportAsync("seed");
        await dr.AcceptReplicaAsync("mail", new AcceptReplicaRequest("home"));
        await Sites.WriteRandomAsync(homeExport.Url!, 16 << 20, 12 << 20); // 12 MiB the seed does not have

        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr", Seed: true));
        var seeded = await home.SyncReplicaAsync("mail");

        Assert.True(proxy.CutsMade >= 1, "the link was cut");
        Assert.True(seeded.Retries >= 1);
        Assert.InRange(seeded.LastRangeBytes, 1, 12 << 20); // the final attempt's share of the 12 MiB that differ
        Assert.InRange(seeded.LastCompressionRatio!.Value, 0.8, 1.1); // random data: the ratio compares that attempt's ranges with its own bytes
        Assert.True(seeded.LastBytesSent < 18 << 20, $"the seeded sync resumed instead of starting over ({seeded.LastBytesSent} bytes)");
        Assert.Equal(await Sites.HashSnapshotAsync(Home, $"mail@{seeded.LastSnapshot}"), await Sites.HashSnapshotAsync(Dr, $"mail@{seeded.LastSnapshot}"));
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task SeedsThatCannotBecomeTheReplica_AreRefusedClearly_AndLeftAlone()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("small", 8 << 20));
        await home.CreateVolumeAsync(new CreateVolumeRequest("blocks", 8 << 20, 512));
        await home.CreateVolumeAsync(new CreateVolumeRequest("busy", 8 << 20));
        await dr.CreateVolumeAsync(new CreateVolumeRequest("small", 16 << 20)); // larger than the source
        await dr.CreateVolumeAsync(new CreateVolumeRequest("blocks", 8 << 20, 4096));
        await dr.CreateVolumeAsync(new CreateVolumeRequest("busy", 8 << 20));
        await dr.CreateExportAsync(new CreateExportRequest("busy", "busy", "nbd")); // an application writes it
        await dr.AcceptReplicaAsync("small", new AcceptReplicaRequest("home"));
        await dr.AcceptReplicaAsync("blocks", new AcceptReplicaRequest("home"));
        var busyAccept = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.AcceptReplicaAsync("busy", new AcceptReplicaRequest("home")));
        foreach (var volume in new[] { "small", "blocks", "busy" })
        {
            await home.CreateReplicaAsync(new CreateReplicaRequest(volume, "dr", Seed: true));
        }

        var larger = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("small"));
        var blockSize = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("blocks"));
        var exported = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("busy"));

        Assert.Contains("volumes cannot shrink", larger.Message, StringComparison.Ordinal);
        Assert.Contains("512-byte", blockSize.Message, StringComparison.Ordinal);
        Assert.Contains("exported read-write", busyAccept.Message, StringComparison.Ordinal);
        Assert.Contains("replica accept busy --from home", exported.Message, StringComparison.Ordinal);
        foreach (var volume in new[] { "small", "blocks", "busy" })
        {
            Assert.DoesNotContain(await dr.ListSnapshotsAsync(volume), s => s.Name.StartsWith("repl-", StringComparison.Ordinal));
        }
    }

    /// <summary>The live volume's hash, through a snapshot taken and deleted for it.</summary>
    private async Task<string> HashLiveAsync(ServerProcess server, TidemarkClient client, string volume)
    {
        var name = $"hash-{Guid.NewGuid():N}"[..20];
        await client.CreateSnapshotAsync(volume, name);
        try
        {
            return await Sites.HashSnapshotAsync(server, $"{volume}@{name}");
        }
        finally
        {
            await client.DeleteSnapshotAsync($"{volume}@{name}");
        }
    }
}
