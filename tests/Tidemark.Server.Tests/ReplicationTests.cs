using System.Net;
using System.Net.Sockets;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Two real servers, paired: replicate, change, replicate the difference, through a link that breaks.</summary>
public sealed class ReplicationTests : IAsyncLifetime
{
    private TwoServers _sites = null!;

    private ServerProcess Primary => _sites.Primary;

    private ServerProcess Dr => _sites.Dr;

    public async Task InitializeAsync() => _sites = await TwoServers.StartAsync("--replication-retry-delay", "100ms");

    public async Task DisposeAsync() => await _sites.DisposeAsync();

    [Fact]
    public async Task FullThenIncremental_ThroughALinkThatBreaks_EndsIdenticalAndSendsOnlyChanges()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        var primaryId = await primary.GetIdentityAsync();
        var drId = await dr.GetIdentityAsync();
        using var proxy = new CuttingProxy(IPEndPoint.Parse(drId.ReplicationAddress!), cutAfterBytes: 3 << 20, cuts: 2);
        await primary.AddPartnerAsync(new AddPartnerRequest("dr", proxy.Address, drId.Fingerprint));
        await dr.AddPartnerAsync(new AddPartnerRequest("primary", primaryId.ReplicationAddress!, primaryId.Fingerprint));
        await primary.CreateVolumeAsync(new CreateVolumeRequest("mail", 64 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await _sites.WriteRandomAsync(live.Url!, 0, 16 << 20);

        (await CliProcess.RunAsync("replica", "create", "mail", "--to", "dr", "--as", "mail-dr", "--data", Primary.DataDirectory)).AssertSuccess();
        var first = await primary.SyncReplicaAsync("mail");
        await _sites.WriteRandomAsync(live.Url!, 32 << 20, 1 << 20);
        var second = await primary.SyncReplicaAsync("mail");
        var listed = (await CliProcess.RunAsync("replica", "list", "--data", Primary.DataDirectory)).AssertSuccess().StandardOutput;

        Assert.True(proxy.CutsMade >= 1, "the link was cut");
        Assert.True(first.Retries >= 1);
        Assert.True(first.LastBytesSent < 24 << 20, $"the first sync resumed instead of starting over ({first.LastBytesSent} bytes)");
        Assert.True(second.LastBytesSent < 2 << 20, $"the second sync sent {second.LastBytesSent} bytes for 1 MiB changed");
        Assert.Null(second.LastError);
        var replicaSnapshots = await dr.ListSnapshotsAsync("mail-dr");
        Assert.Equal([first.LastSnapshot, second.LastSnapshot], replicaSnapshots.Select(s => s.Name));
        Assert.Equal(await _sites.HashSnapshotAsync(Primary, $"mail@{second.LastSnapshot}"), await _sites.HashSnapshotAsync(Dr, $"mail-dr@{second.LastSnapshot}"));
        Assert.Equal([second.LastSnapshot], (await primary.ListSnapshotsAsync("mail")).Select(s => s.Name)); // the older base is gone
        Assert.Contains("mail-dr", listed, StringComparison.Ordinal);
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task Sync_ToAnUnpairedPartner_FailsClearly_AndTheReplicaRecordsTheError()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        var drId = await dr.GetIdentityAsync();
        await primary.AddPartnerAsync(new AddPartnerRequest("dr", drId.ReplicationAddress!, drId.Fingerprint)); // dr did not pair back
        await primary.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        await primary.CreateReplicaAsync(new CreateReplicaRequest("db", "dr"));
        using var http = new HttpClient { BaseAddress = Primary.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Primary.Token);

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => primary.SyncReplicaAsync("db"));
        var replica = await primary.GetReplicaAsync("db");
        var unknown = await Assert.ThrowsAsync<TidemarkApiException>(() => primary.CreateReplicaAsync(new CreateReplicaRequest("db2", "nobody")));

        Assert.Contains("failed after 1 attempt", error.Message, StringComparison.Ordinal); // a refusal is not retried
        Assert.Contains("not paired", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, replica.Retries);
        Assert.NotNull(replica.LastError);
        Assert.Null(replica.LastSnapshot);
        Assert.Equal("not-found", unknown.Code);
    }

    [Fact]
    public async Task Promote_AtTheDrSite_WithThePrimaryDown_MakesTheReplicaWritable_AndStopsReplicationIntoIt()
    {
        using (var primary = Primary.Client())
        using (var dr = Dr.Client())
        {
            var primaryId = await primary.GetIdentityAsync();
            var drId = await dr.GetIdentityAsync();
            await primary.AddPartnerAsync(new AddPartnerRequest("dr", drId.ReplicationAddress!, drId.Fingerprint));
            await dr.AddPartnerAsync(new AddPartnerRequest("primary", primaryId.ReplicationAddress!, primaryId.Fingerprint));
            await primary.CreateVolumeAsync(new CreateVolumeRequest("app", 16 << 20));
            var live = await primary.CreateExportAsync(new CreateExportRequest("app", "app", "nbd"));
            (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x71 0 2M", live.Url!)).AssertSuccess();
            await primary.CreateReplicaAsync(new CreateReplicaRequest("app", "dr"));
            await primary.SyncReplicaAsync("app");
        }

        await Primary.KillAsync(); // the primary site is gone
        var promoted = (await CliProcess.RunAsync("replica", "promote", "app", "--data", Dr.DataDirectory)).AssertSuccess().StandardOutput;
        using var drClient = Dr.Client();
        var export = await drClient.CreateExportAsync(new CreateExportRequest("app", "app-dr", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x71 0 2M", "-c", "write -P 0x72 4M 1M", export.Url!)).AssertSuccess();
        var twice = await Assert.ThrowsAsync<TidemarkApiException>(() => drClient.PromoteReplicaAsync("nothing-here"));

        Assert.Contains("is now a primary here", promoted, StringComparison.Ordinal);
        Assert.Equal(["app"], await GetPromotedAsync(drClient));
        Assert.Equal("not-found", twice.Code);
        Assert.True((await drClient.VerifyAsync()).Clean);
    }

    private async Task<List<string>> GetPromotedAsync(TidemarkClient client)
    {
        using var http = new HttpClient { BaseAddress = Dr.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Dr.Token);
        return (await System.Net.Http.Json.HttpClientJsonExtensions.GetFromJsonAsync<List<string>>(http, "api/v1/incoming/promoted"))!;
    }

    [Fact]
    public async Task SyncIntoAPromotedReplica_IsRefusedWithoutRetrying()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Primary, "dr", Dr, "primary");
        await primary.CreateVolumeAsync(new CreateVolumeRequest("app", 16 << 20));
        await primary.CreateReplicaAsync(new CreateReplicaRequest("app", "dr"));
        await primary.SyncReplicaAsync("app");
        await dr.PromoteReplicaAsync("app");

        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => primary.SyncReplicaAsync("app"));
        var replica = await primary.GetReplicaAsync("app");

        Assert.Contains("promoted", refused.Message, StringComparison.Ordinal);
        Assert.Contains("after 1 attempt", refused.Message, StringComparison.Ordinal);
        Assert.Equal(0, replica.Retries);
    }

    [Fact]
    public async Task ReplicaWithAnInterval_SyncsByItself_AndKeepsFollowingTheSource()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Primary, "dr", Dr, "primary");
        await primary.CreateVolumeAsync(new CreateVolumeRequest("logs", 16 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("logs", "logs", "nbd"));
        var bad = await Assert.ThrowsAsync<TidemarkApiException>(() => primary.CreateReplicaAsync(new CreateReplicaRequest("logs", "dr", Every: "soon")));

        (await CliProcess.RunAsync("replica", "create", "logs", "--to", "dr", "--every", "1s", "--data", Primary.DataDirectory)).AssertSuccess();
        var first = await WaitForAsync(primary, "logs", r => r.LastSnapshot is not null);
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x55 1M 1M", live.Url!)).AssertSuccess();
        var later = await WaitForAsync(primary, "logs", r => r.LastSnapshot != first.LastSnapshot && r.LastBytesSent > 0);
        await primary.DeleteReplicaAsync("logs"); // stop following, then let a sync already under way finish
        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
        {
            while ((await primary.ListJobsAsync(timeout.Token)).Any(j => j.Kind == "replica.sync" && j.State == "running"))
            {
                await Task.Delay(100, timeout.Token);
            }
        }

        var onPrimary = (await primary.ListSnapshotsAsync("logs")).Select(x => x.Name).ToHashSet();
        var shared = (await dr.ListSnapshotsAsync("logs")).Select(x => x.Name).Last(onPrimary.Contains);

        Assert.Equal("invalid-argument", bad.Code);
        Assert.Equal("1s", later.Every);
        Assert.Equal(await _sites.HashSnapshotAsync(Primary, $"logs@{shared}"), await _sites.HashSnapshotAsync(Dr, $"logs@{shared}"));
    }

    [Fact]
    public async Task ReplicaFollowingPolicySnapshots_SyncsAfterEachOne()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Primary, "dr", Dr, "primary");
        await primary.CreateVolumeAsync(new CreateVolumeRequest("notes", 16 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("notes", "notes", "nbd"));
        await _sites.WriteRandomAsync(live.Url!, 0, 1 << 20);
        (await CliProcess.RunAsync("replica", "create", "notes", "--to", "dr", "--after-policy-snapshots", "--data", Primary.DataDirectory)).AssertSuccess();
        (await CliProcess.RunAsync("policy", "create", "hourly", "--volume", "notes", "--daily", "02:30", "--keep-last", "3", "--data", Primary.DataDirectory)).AssertSuccess();
        await Task.Delay(TimeSpan.FromSeconds(2));
        var before = await primary.GetReplicaAsync("notes"); // no policy snapshot yet: no sync

        (await CliProcess.RunAsync("policy", "run", "hourly", "--data", Primary.DataDirectory)).AssertSuccess();
        var synced = await WaitForAsync(primary, "notes", r => r.LastSnapshot is not null);

        Assert.Null(before.LastSnapshot);
        Assert.True(synced.AfterPolicySnapshots);
        Assert.Equal(await _sites.HashSnapshotAsync(Primary, $"notes@{synced.LastSnapshot}"), await _sites.HashSnapshotAsync(Dr, $"notes@{synced.LastSnapshot}"));
    }

    [Fact]
    public async Task BandwidthLimit_SetUpdatedAndCleared_AndABadRateIsRefused()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Primary, "dr", Dr, "primary");
        await primary.CreateVolumeAsync(new CreateVolumeRequest("slow", 16 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("slow", "slow", "nbd"));
        await _sites.WriteRandomAsync(live.Url!, 0, 1 << 20);

        (await CliProcess.RunAsync("replica", "create", "slow", "--to", "dr", "--bandwidth", "8M", "--data", Primary.DataDirectory)).AssertSuccess();
        var limited = await primary.SyncReplicaAsync("slow");
        var bad = await CliProcess.RunAsync("replica", "update", "slow", "--bandwidth", "1K", "--data", Primary.DataDirectory);
        var changed = await primary.UpdateReplicaAsync("slow", new UpdateReplicaRequest(Every: "1h"));
        var cleared = await primary.UpdateReplicaAsync("slow", new UpdateReplicaRequest(Bandwidth: "off"));

        Assert.Null(limited.LastError);
        Assert.Equal(await _sites.HashSnapshotAsync(Primary, $"slow@{limited.LastSnapshot}"), await _sites.HashSnapshotAsync(Dr, $"slow@{limited.LastSnapshot}"));
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("at least 64K", bad.StandardError, StringComparison.Ordinal);
        Assert.Equal(("8M", "1h"), (changed.Bandwidth, changed.Every));
        Assert.Equal(((string?)null, "1h"), (cleared.Bandwidth, cleared.Every));
    }

    [Fact]
    public async Task ReplicaShow_DuringASync_ReportsProgressWithAnEta()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Primary, "dr", Dr, "primary");
        await primary.CreateVolumeAsync(new CreateVolumeRequest("big", 16 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("big", "big", "nbd"));
        await _sites.WriteRandomAsync(live.Url!, 0, 4 << 20);
        await primary.CreateReplicaAsync(new CreateReplicaRequest("big", "dr", Bandwidth: "512K")); // about 8 s

        var sync = primary.SyncReplicaAsync("big");
        var during = await WaitForAsync(primary, "big", r => r.Syncing is { EtaSeconds: not null, Done: > 0 });
        // Scraped before the CLI runs: a slow CLI start on a loaded machine could outlast the sync.
        var metricsDuring = await MetricsAsync(Primary);
        var shown = (await CliProcess.RunAsync("replica", "show", "big", "--data", Primary.DataDirectory)).AssertSuccess().StandardOutput;
        var done = await sync;
        var after = await primary.GetReplicaAsync("big");
        var metricsAfter = await MetricsAsync(Primary);

        Assert.Equal(4 << 20, during.Syncing!.Total);
        Assert.InRange(during.Syncing.EtaSeconds!.Value, 0, 20);
        Assert.Contains("ETA", shown, StringComparison.Ordinal);
        Assert.Null(after.Syncing);
        Assert.Null(done.LastError);
        Assert.InRange(after.LastCompressionRatio!.Value, 0.9, 1.1); // random data does not compress
        Assert.Contains("tidemark_replica_sync_eta_seconds{partner=\"dr\",state=\"active\",volume=\"big\"}", metricsDuring.Samples);
        Assert.Contains("tidemark_replica_lag_seconds{partner=\"dr\",state=\"active\",volume=\"big\"}", metricsAfter.Samples);
        Assert.Equal(4 << 20, metricsAfter["tidemark_replica_last_sync_changed_bytes{partner=\"dr\",state=\"active\",volume=\"big\"}"]);
        Assert.Equal(0, metricsAfter["tidemark_replica_failing{partner=\"dr\",state=\"active\",volume=\"big\"}"]);
        Assert.Empty(metricsAfter.Family("tidemark_replica_sync_eta_seconds"));
    }

    [Fact]
    public async Task ReplicaRetention_AtTheDrSite_PrunesOldReplicatedSnapshots_KeepingItsOwnAndExportedOnes()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Primary, "dr", Dr, "primary");
        await primary.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await primary.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var synced = new List<string>();
        async Task SyncAsync(int i)
        {
            await _sites.WriteRandomAsync(live.Url!, i << 20, 64 << 10);
            synced.Add((await primary.SyncReplicaAsync("mail")).LastSnapshot!);
        }

        await SyncAsync(0);
        await dr.CreateExportAsync(new CreateExportRequest($"mail@{synced[0]}", "backup", "nbd")); // a backup reads it
        await dr.CreateSnapshotAsync("mail", "dr-own");
        for (var i = 1; i <= 3; i++)
        {
            await SyncAsync(i);
        }

        Assert.Equal(5, (await dr.ListSnapshotsAsync("mail")).Count); // by default, up to 32 are kept
        var bad = await CliProcess.RunAsync("replica", "retain", "mail", "--keep-last", "0", "--data", Dr.DataDirectory);
        (await CliProcess.RunAsync("replica", "retain", "mail", "--keep-last", "2", "--data", Dr.DataDirectory)).AssertSuccess();
        var afterRetain = (await dr.ListSnapshotsAsync("mail")).Select(s => s.Name).ToList();
        await SyncAsync(4);
        var afterSync = (await dr.ListSnapshotsAsync("mail")).Select(s => s.Name).ToList();

        Assert.Equal(1, bad.ExitCode);
        Assert.Equal([synced[0], "dr-own", synced[2], synced[3]], afterRetain);
        Assert.Equal([synced[0], "dr-own", synced[3], synced[4]], afterSync);
        Assert.Equal(2, Assert.Single(await dr.ListIncomingAsync()).KeepLast);
        Assert.Equal(await _sites.HashSnapshotAsync(Primary, $"mail@{synced[4]}"), await _sites.HashSnapshotAsync(Dr, $"mail@{synced[4]}"));
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    [Fact]
    public async Task CompressionLevel_PerReplica_OffSendsRaw_AndCanBeChanged()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Primary, "dr", Dr, "primary");
        await primary.CreateVolumeAsync(new CreateVolumeRequest("text", 16 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("text", "text", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x41 0 2m", live.Url!)).AssertSuccess();

        var bad = await CliProcess.RunAsync("replica", "create", "text", "--to", "dr", "--zstd-level", "23", "--data", Primary.DataDirectory);
        (await CliProcess.RunAsync("replica", "create", "text", "--to", "dr", "--zstd-level", "0", "--data", Primary.DataDirectory)).AssertSuccess();
        var raw = await primary.SyncReplicaAsync("text");
        (await CliProcess.RunAsync("replica", "update", "text", "--zstd-level", "19", "--data", Primary.DataDirectory)).AssertSuccess();
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x42 4m 2m", live.Url!)).AssertSuccess();
        var packed = await primary.SyncReplicaAsync("text");

        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("zstd level", bad.StandardError, StringComparison.Ordinal);
        Assert.Equal((0, 19), (raw.CompressionLevel, packed.CompressionLevel));
        Assert.True(raw.LastBytesSent >= 2 << 20, $"level 0 sent {raw.LastBytesSent} bytes for 2 MiB");
        Assert.True(packed.LastCompressionRatio > 20, $"level 19 compressed a repeated byte only {packed.LastCompressionRatio}x");
        Assert.Equal(await _sites.HashSnapshotAsync(Primary, $"text@{packed.LastSnapshot}"), await _sites.HashSnapshotAsync(Dr, $"text@{packed.LastSnapshot}"));
    }

    private static async Task<PrometheusExposition> MetricsAsync(ServerProcess server)
    {
        using var http = new HttpClient { BaseAddress = server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", server.Token);
        return PrometheusExposition.Parse(await http.GetStringAsync("metrics"));
    }

    private static async Task<ReplicaDto> WaitForAsync(TidemarkClient client, string volume, Func<ReplicaDto, bool> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        while (true)
        {
            var replica = await client.GetReplicaAsync(volume, timeout.Token);
            if (condition(replica))
            {
                return replica;
            }

            await Task.Delay(200, timeout.Token);
        }
    }
}
