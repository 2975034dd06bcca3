using System.Text.Json;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;
using Tidemark.Replication;
using Tidemark.Server.Replication;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Two sites of an older version, whose replication state (partners, replicas, incoming replicas,
/// standby exports, promoted replicas) was in JSON files, started by this one: everything is still
/// there, now in each pool's metadata (ADR 0011), each old file is renamed NAME.migrated, and
/// replication goes on from the snapshot both sites share.
/// </summary>
public sealed class ReplicationStateMigrationTests : IDisposable
{
    private static readonly string[] OldFiles = ["partners.json", "replicas.json", "incoming.json", "standby.json", "promoted.json"];

    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Start_OnOldReplicationStateFiles_KeepsEveryRecord_AndTheNextSyncIsIncremental()
    {
        var (primaryData, drData) = (_temp.Combine("primary"), _temp.Combine("dr"));
        string[] primaryArgs = ["--replication", $"127.0.0.1:{FreePort.FindStable()}", "--replication-retry-delay", "100ms"];
        string[] drArgs = ["--replication", $"127.0.0.1:{FreePort.FindStable()}"];
        ReplicaDto replicaBefore;
        IReadOnlyList<IncomingReplicaDto> incomingBefore;
        IReadOnlyList<PartnerDto> partnersBefore;
        await using (var primary = await ServerProcess.StartAsync(primaryData, primaryArgs))
        await using (var dr = await ServerProcess.StartAsync(drData, drArgs))
        {
            await Pairing.PairAsync(primary, "dr", dr, "primary");
            using var source = primary.Client();
            using var target = dr.Client();
            await source.CreateVolumeAsync(new CreateVolumeRequest("mail", 8 << 20));
            await source.CreateVolumeAsync(new CreateVolumeRequest("old", 8 << 20));
            await WriteAsync(primary, "mail", 2 << 20);
            await source.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr", StandbyExports: [new StandbyExportDto("nbd", "mail-dr")]));
            await source.CreateReplicaAsync(new CreateReplicaRequest("old", "dr"));
            await source.SyncReplicaAsync("mail");
            await source.SyncReplicaAsync("old");
            await target.SetReplicaRetentionAsync("mail", 5);
            await target.PromoteReplicaAsync("old");
            replicaBefore = await source.GetReplicaAsync("mail");
            incomingBefore = await target.ListIncomingAsync();
            partnersBefore = await source.ListPartnersAsync();
            Assert.Equal(0, await primary.StopAsync());
            Assert.Equal(0, await dr.StopAsync());
        }

        AsOlderVersionWroteIt(primaryData);
        AsOlderVersionWroteIt(drData);

        await using (var primary = await ServerProcess.StartAsync(primaryData, primaryArgs))
        await using (var dr = await ServerProcess.StartAsync(drData, drArgs))
        {
            using var source = primary.Client();
            using var target = dr.Client();
            Assert.Equal(partnersBefore, await source.ListPartnersAsync());
            Assert.Equal(["primary"], (await target.ListPartnersAsync()).Select(p => p.Name));
            var replica = await source.GetReplicaAsync("mail");
            Assert.Equal((replicaBefore.LastSnapshot, replicaBefore.BytesSent), (replica.LastSnapshot, replica.BytesSent));
            Assert.Equal(incomingBefore.Select(Shown), (await target.ListIncomingAsync()).Select(Shown));
            var mailBefore = incomingBefore.Single(i => i.Volume == "mail");
            Assert.Equal((5, 1), (mailBefore.KeepLast, mailBefore.StandbyExports?.Count));
            Assert.True(incomingBefore.Single(i => i.Volume == "old").Promoted);

            var synced = await source.SyncReplicaAsync("mail");

            // Sent from the snapshot both sites kept: nothing was written since, so next to nothing
            // travels (a full stream would carry the 2 MiB written before).
            Assert.True(synced.LastBytesSent < (256 << 10), $"the sync after the migration sent {synced.LastBytesSent} bytes");
            var mail = (await target.ListIncomingAsync()).Single(i => i.Volume == "mail");
            Assert.Equal((mailBefore.Sequence + 1, mailBefore.Generation, 5), (mail.Sequence, mail.Generation, mail.KeepLast));
            Assert.Equal(synced.LastSnapshot, mail.LastSnapshot);

            // Still promoted at the DR site: replication into it stays refused.
            await Assert.ThrowsAsync<TidemarkApiException>(() => source.SyncReplicaAsync("old"));
        }

        foreach (var data in new[] { primaryData, drData })
        {
            foreach (var name in OldFiles)
            {
                Assert.False(File.Exists(Path.Combine(data, name)), name);
                Assert.True(File.Exists(Path.Combine(data, name + ".migrated")), name);
            }
        }
    }

    private static object Shown(IncomingReplicaDto i) =>
        (i.Volume, i.Partner, i.SourceVolume, i.LastSnapshot, i.LastSnapshotId, i.LastSnapshotCreatedAt, i.Sequence, i.Generation, i.KeepLast, i.Promoted, i.Group, string.Join(',', (i.StandbyExports ?? []).Select(e => e.Name)));

    /// <summary>
    /// Turns a stopped server's replication records back into the files an older version kept (each
    /// in that version's layout: its API types, serialized as it serialized them) and deletes the records.
    /// </summary>
    private static void AsOlderVersionWroteIt(string data) =>
        StoredState.Change(data, pool =>
        {
            var control = pool.Control;
            Write(data, "partners.json", control.List(PartnerRegistry.Kind).Select(p => p.Value.ToDto()).ToList());
            Write(data, "replicas.json", control.List(ReplicaManager.Kind).Select(r => r.Value).ToList());
            Write(data, "incoming.json", control.List(ReplicaReceiver.IncomingKind).Select(r => r.Value.ToDto()).ToList());
            Write(data, "standby.json", control.List(ReplicaReceiver.StandbyKind).ToDictionary(s => s.Key, s => s.Value.Exports.Select(e => e.ToRequest()).ToList()));
            Write(data, "promoted.json", control.List(ReplicaReceiver.PromotedKind).Select(p => p.Key).ToList());
            Clear(control, PartnerRegistry.Kind);
            Clear(control, ReplicaManager.Kind);
            Clear(control, ReplicaReceiver.IncomingKind);
            Clear(control, ReplicaReceiver.StandbyKind);
            Clear(control, ReplicaReceiver.PromotedKind);
        });

    private static void Clear<T>(ControlStore control, ControlKind<T> kind)
        where T : class =>
        control.ReplaceAll(kind, []);

    private static void Write<T>(string data, string name, T state) =>
        File.WriteAllText(Path.Combine(data, name), JsonSerializer.Serialize(state, ServerSettings.FileJson) + "\n");

    private static async Task WriteAsync(ServerProcess server, string volume, int bytes)
    {
        using var client = server.Client();
        var export = await client.CreateExportAsync(new CreateExportRequest(volume, "write-" + volume, "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -P 7 0 {bytes}", export.Url!)).AssertSuccess();
        await client.DeleteExportAsync(export.Name);
    }
}
