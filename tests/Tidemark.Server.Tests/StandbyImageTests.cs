using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// ADR 0008 at the DR site: a read-only export of a replica serves its newest replicated snapshot,
/// so replication commits never change the image under a client that is attached (it moves to the
/// newer snapshot when it reconnects), and what would change a live image under attached clients
/// (a fail-back into home) is refused, naming them. Real NBD connections held open across syncs.
/// </summary>
public sealed class StandbyImageTests : TwoSiteTests
{
    [Fact]
    public async Task AttachedStandbyClient_KeepsItsImageAcrossCommits_NewClientsGetTheNewest_AndItsSnapshotIsNotPrunedUnderIt()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var live = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 64k", live.Url!)).AssertSuccess();
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var first = await home.SyncReplicaAsync("mail");
        await dr.SetReplicaRetentionAsync("mail", 1);
        await dr.CreateExportAsync(new CreateExportRequest("mail", "standby", "nbd", ReadOnly: true));
        using var attached = await AttachedNbdClient.ConnectAsync(Dr.Nbd, "standby");
        var before = await attached.ReadAsync(0, 4096);

        // Two commits while the client stays attached.
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x22 0 64k", live.Url!)).AssertSuccess();
        await home.SyncReplicaAsync("mail");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x33 0 64k", live.Url!)).AssertSuccess();
        var third = await home.SyncReplicaAsync("mail");
        var during = await attached.ReadAsync(0, 4096);
        var keptWhileAttached = (await dr.ListSnapshotsAsync("mail")).Select(s => s.Name).ToList();
        using (var reconnected = await AttachedNbdClient.ConnectAsync(Dr.Nbd, "standby"))
        {
            Assert.All(await reconnected.ReadAsync(0, 4096), b => Assert.Equal(0x33, b));
        }

        // Once it has gone, the next commit prunes its snapshot.
        attached.Dispose();
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x44 0 64k", live.Url!)).AssertSuccess();
        var fourth = await home.SyncReplicaAsync("mail");
        var keptAfter = (await dr.ListSnapshotsAsync("mail")).Select(s => s.Name).ToList();

        Assert.All(before, b => Assert.Equal(0x11, b));
        Assert.All(during, b => Assert.Equal(0x11, b)); // the attached client's image did not change under it
        Assert.Contains(first.LastSnapshot!, keptWhileAttached);
        Assert.Contains(third.LastSnapshot!, keptWhileAttached);
        Assert.DoesNotContain(first.LastSnapshot!, keptAfter);
        Assert.Contains(fourth.LastSnapshot!, keptAfter);
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task FailBackIntoHome_WhileAClientReadsHomesLiveImage_IsRefusedNamingIt_ThenHomesReadOnlyExportServesTheReplica()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        await home.SyncReplicaAsync("mail");
        await home.CreateExportAsync(new CreateExportRequest("mail", "reports", "nbd", ReadOnly: true));
        await dr.PromoteReplicaAsync("mail");
        var drExport = await dr.CreateExportAsync(new CreateExportRequest("mail", "mail-dr", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 64k", drExport.Url!)).AssertSuccess();
        await dr.DeleteExportAsync("mail-dr");

        TidemarkApiException refused;
        using (var reader = await AttachedNbdClient.ConnectAsync(Home.Nbd, "reports"))
        {
            refused = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.ReverseReplicaAsync("mail"));
            Assert.All(await reader.ReadAsync(0, 4096), b => Assert.Equal(0, b)); // home's image untouched
        }

        var back = await WithRetryAsync(() => dr.ReverseReplicaAsync("mail"));
        using var after = await AttachedNbdClient.ConnectAsync(Home.Nbd, "reports");

        Assert.Contains("connected client", refused.Message, StringComparison.Ordinal);
        Assert.Contains("failing back from dr into mail", refused.Message, StringComparison.Ordinal);
        Assert.Null(back.LastError);
        Assert.All(await after.ReadAsync(0, 4096), b => Assert.Equal(0x5a, b)); // now a replica: its newest replicated snapshot
    }

    [Fact]
    public async Task SeedOverAVolumeAClientReads_IsRefusedNamingIt_AfterAcceptNewClientsReadTheKeptSnapshot_AndTheSeedNeverChangesTheirImage()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var homeExport = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x66 0 64k", homeExport.Url!)).AssertSuccess();
        await dr.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var seed = await dr.CreateExportAsync(new CreateExportRequest("mail", "seed", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x55 0 64k", seed.Url!)).AssertSuccess();
        await dr.DeleteExportAsync("seed");
        await dr.CreateExportAsync(new CreateExportRequest("mail", "standby", "nbd", ReadOnly: true));
        var onLive = await AttachedNbdClient.ConnectAsync(Dr.Nbd, "standby"); // attached before the volume became a replica target

        await dr.AcceptReplicaAsync("mail", new AcceptReplicaRequest("home"));
        await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr", Seed: true));
        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => home.SyncReplicaAsync("mail"));
        onLive.Dispose();
        using var onKept = await AttachedNbdClient.ConnectAsync(Dr.Nbd, "standby");
        var seeded = await WithRetryAsync(() => home.SyncReplicaAsync("mail"));
        using var onNewest = await AttachedNbdClient.ConnectAsync(Dr.Nbd, "standby");

        Assert.Contains("connected client", refused.Message, StringComparison.Ordinal);
        Assert.Contains("hash scan of mail", refused.Message, StringComparison.Ordinal);
        Assert.Null(seeded.LastError);
        Assert.All(await onKept.ReadAsync(0, 4096), b => Assert.Equal(0x55, b)); // the pre-seed snapshot, untouched by the seed
        Assert.All(await onNewest.ReadAsync(0, 4096), b => Assert.Equal(0x66, b));
    }

    // The server ends a session when it sees the client's close; a request right after may still find it.
    private static async Task<T> WithRetryAsync<T>(Func<Task<T>> action)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await action();
            }
            catch (TidemarkApiException ex) when (attempt < 20 && ex.Message.Contains("connected client", StringComparison.Ordinal))
            {
                await Task.Delay(100);
            }
        }
    }
}
