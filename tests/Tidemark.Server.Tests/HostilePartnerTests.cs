using System.Net;
using System.Security.Cryptography;
using Tidemark.Api;
using Tidemark.Replication;
using Tidemark.Server.Replication;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// A paired partner is trusted to connect, not to be right: garbage, a replayed stream, a tampered or
/// truncated one sent over the real mutual-TLS link are refused with a clear error, and the replica
/// keeps its last complete snapshot; an honest sync afterwards still works.
/// </summary>
public sealed class HostilePartnerTests : IAsyncLifetime
{
    private TwoServers _sites = null!;

    public async Task InitializeAsync() => _sites = await TwoServers.StartAsync("--replication-retry-delay", "100ms");

    public async Task DisposeAsync() => await _sites.DisposeAsync();

    [Fact]
    public async Task GarbageReplayedTamperedAndTruncatedStreams_AreRefused_AndTheReplicaIsUnchanged()
    {
        using var primary = _sites.Primary.Client();
        using var dr = _sites.Dr.Client();
        var (_, drId) = await Pairing.PairAsync(_sites.Primary, "dr", _sites.Dr, "primary");
        await primary.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var live = await primary.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await _sites.WriteRandomAsync(live.Url!, 0, 2 << 20);
        await primary.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
        var synced = await primary.SyncReplicaAsync("mail");
        var replicaHash = await _sites.HashSnapshotAsync(_sites.Dr, $"mail@{synced.LastSnapshot}");

        // A stream the primary legitimately made earlier, and an incremental one after new writes.
        var old = _sites.Temp.Combine("old.tmstream");
        (await CliProcess.RunAsync("snapshot", "export", $"mail@{synced.LastSnapshot}", old, "--data", _sites.Primary.DataDirectory)).AssertSuccess();
        await _sites.WriteRandomAsync(live.Url!, 4 << 20, 1 << 20);
        await primary.CreateSnapshotAsync("mail", "next");
        var next = _sites.Temp.Combine("next.tmstream");
        (await CliProcess.RunAsync("snapshot", "export", "mail@next", next, "--from", $"mail@{synced.LastSnapshot}", "--data", _sites.Primary.DataDirectory)).AssertSuccess();
        var tampered = await File.ReadAllBytesAsync(next);
        tampered[tampered.Length / 2] ^= 0x40;
        var truncated = (await File.ReadAllBytesAsync(next))[..(int)(new FileInfo(next).Length * 2 / 3)];

        using var identity = ServerIdentity.LoadOrCreate(Path.Combine(_sites.Primary.DataDirectory, "identity"));
        using var link = PartnerLink.Create(identity, new PartnerDto("dr", drId.ReplicationAddress!, drId.Fingerprint, DateTimeOffset.UtcNow), TimeSpan.FromSeconds(60));
        var garbage = await SendAsync(link, RandomNumberGenerator.GetBytes(256 << 10));
        var replayed = await SendAsync(link, await File.ReadAllBytesAsync(old));
        var badChecksum = await SendAsync(link, tampered);
        var cutShort = await SendAsync(link, truncated);

        Assert.Equal(HttpStatusCode.BadRequest, garbage.Status);
        Assert.Contains("not a Tidemark snapshot stream", garbage.Body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Conflict, replayed.Status);
        Assert.Contains("replayed", replayed.Body, StringComparison.Ordinal);
        Assert.False(badChecksum.Status.IsSuccess(), badChecksum.Body);
        Assert.Contains("checksum", badChecksum.Body, StringComparison.OrdinalIgnoreCase);
        Assert.False(cutShort.Status.IsSuccess(), cutShort.Body);
        Assert.Equal([synced.LastSnapshot], (await dr.ListSnapshotsAsync("mail")).Select(s => s.Name));
        Assert.Equal(replicaHash, await _sites.HashSnapshotAsync(_sites.Dr, $"mail@{synced.LastSnapshot}"));

        // The honest partner's next sync is not disturbed by what the hostile requests left behind.
        var honest = await primary.SyncReplicaAsync("mail");
        Assert.Null(honest.LastError);
        Assert.Equal(await _sites.HashSnapshotAsync(_sites.Primary, $"mail@{honest.LastSnapshot}"), await _sites.HashSnapshotAsync(_sites.Dr, $"mail@{honest.LastSnapshot}"));
        Assert.True((await dr.VerifyAsync()).Clean);
    }

    private static async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpClient link, byte[] stream)
    {
        using var content = new ByteArrayContent(stream);
        using var response = await link.PostAsync($"{PartnerLink.PathPrefix.TrimStart('/')}/volumes/mail/receive?resume=0", content);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

}

internal static class HttpStatusCodeExtensions
{
    public static bool IsSuccess(this HttpStatusCode status) => (int)status is >= 200 and < 300;
}
