using System.Net;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// iSCSI exports of a real `tidemark serve` process, made through the CLI and the API and judged by
/// libiscsi's tools (Debian libiscsi-bin: iscsi-ls, iscsi-inq, iscsi-readcapacity16).
/// </summary>
public sealed class IscsiExportTests : ServerTest
{
    private const string Allowed = "iqn.2026-11.dev.tidemark.test:allowed";
    private const string Intruder = "iqn.2026-11.dev.tidemark.test:intruder";

    [Fact]
    public async Task ExportIscsi_ViaCli_DiscoveredInquiredAndCapacityReported()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        await Client.CreateSnapshotAsync("db", "s1");
        var iqn = "iqn.2026-11.dev.tidemark:db";

        var created = (await Cli("export", "iscsi", "db", "db", "db@s1")).AssertSuccess();
        var listed = (await Cli("export", "list")).AssertSuccess();
        var ls = (await Tool("iscsi-ls", "-s", $"iscsi://{Server.Iscsi}")).AssertSuccess();
        var inq = (await Tool("iscsi-inq", Server.IscsiUrl(iqn))).AssertSuccess();
        var capacity = (await Tool("iscsi-readcapacity16", Server.IscsiUrl(iqn))).AssertSuccess();
        var snapshotCapacity = (await Tool("iscsi-readcapacity16", Server.IscsiUrl(iqn, 1))).AssertSuccess();
        var export = Assert.Single(await Client.ListExportsAsync());

        Assert.Contains(Server.IscsiUrl(iqn), created.StandardOutput, StringComparison.Ordinal);
        Assert.Matches(@"db\s+iscsi\s+db,db@s1\s+rw,ro\s+any\s+online", listed.StandardOutput);
        Assert.Contains($"Target:{iqn} Portal:{Server.Iscsi}", ls.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("Lun:0", ls.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("Lun:1", ls.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("TIDEMARK", inq.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("RETURNED LOGICAL BLOCK ADDRESS:32767", capacity.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("LOGICAL BLOCK LENGTH IN BYTES:512", capacity.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("LBPME:1", capacity.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("RETURNED LOGICAL BLOCK ADDRESS:32767", snapshotCapacity.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(("iscsi", iqn, "online", false), (export.Protocol, export.Iqn, export.State, export.ReadOnly));
        Assert.Equal([new ExportLunDto(0, "db", false, Server.IscsiUrl(iqn)), new ExportLunDto(1, "db@s1", true, Server.IscsiUrl(iqn, 1))], export.Luns!);
    }

    [Fact]
    public async Task ExportIscsi_AllowList_OtherInitiatorSeesNothingAndCannotLogIn()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("crm", 8 << 20));
        var export = await Client.CreateExportAsync(new CreateExportRequest("crm", Protocol: "iscsi", AllowedInitiators: [Allowed]));

        var intruderLs = await Tool("iscsi-ls", "-i", Intruder, $"iscsi://{Server.Iscsi}");
        var intruderInq = await Tool("iscsi-inq", "-i", Intruder, export.Url!);
        var allowedLs = (await Tool("iscsi-ls", "-i", Allowed, $"iscsi://{Server.Iscsi}")).AssertSuccess();
        var allowedInq = (await Tool("iscsi-inq", "-i", Allowed, export.Url!)).AssertSuccess();

        Assert.Equal([Allowed], export.AllowedInitiators!);
        Assert.DoesNotContain(export.Iqn!, intruderLs.StandardOutput, StringComparison.Ordinal);
        Assert.NotEqual(0, intruderInq.ExitCode);
        Assert.Contains(export.Iqn!, allowedLs.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("TIDEMARK", allowedInq.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExportIscsi_Chap_WrongSecretRefusedRightSecretLogsIn()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("mail", 8 << 20));
        (await Cli("export", "iscsi", "mail", "mail", "--iqn", "iqn.2026-11.dev.tidemark:mailstore", "--chap-user", "alice", "--chap-secret", "alice-secret-12")).AssertSuccess();
        var address = $"{Server.Iscsi}/iqn.2026-11.dev.tidemark:mailstore/0";

        var wrong = await Tool("iscsi-inq", $"iscsi://alice%wrong-secret-99@{address}");
        var none = await Tool("iscsi-inq", $"iscsi://{address}");
        var right = (await Tool("iscsi-inq", $"iscsi://alice%alice-secret-12@{address}")).AssertSuccess();
        var export = Assert.Single(await Client.ListExportsAsync());
        var json = (await Cli("export", "list", "--json")).AssertSuccess().StandardOutput;

        Assert.NotEqual(0, wrong.ExitCode);
        Assert.NotEqual(0, none.ExitCode);
        Assert.Contains("TIDEMARK", right.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(("alice", (string?)null), (export.ChapUser, export.MutualChapUser));
        Assert.DoesNotContain("alice-secret-12", json, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExportIscsi_MutualChap_TargetMustProveItsSecret()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("erp", 8 << 20));
        var export = await Client.CreateExportAsync(new CreateExportRequest(
            "erp", Protocol: "iscsi", ChapUser: "bob", ChapSecret: "bob-secret-123", MutualChapUser: "tm", MutualChapSecret: "target-secret-1"));
        var url = $"iscsi://bob%bob-secret-123@{Server.Iscsi}/{export.Iqn}/0";

        var good = await Tool("iscsi-inq", $"{url}?target_user=tm&target_password=target-secret-1");
        var forged = await Tool("iscsi-inq", $"{url}?target_user=tm&target_password=not-the-secret");

        good.AssertSuccess();
        Assert.NotEqual(0, forged.ExitCode);
        Assert.Equal(("bob", "tm"), (export.ChapUser, export.MutualChapUser));
    }

    [Fact]
    public async Task CreateIscsiExport_BadRequests_ReturnProblems()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("v", 8 << 20));
        await Client.CreateExportAsync(new CreateExportRequest("v", "first", "iscsi", Iqn: "iqn.2026-11.dev.tidemark:taken"));

        var shortSecret = await Refused(new CreateExportRequest("v", "a", "iscsi", ChapUser: "u", ChapSecret: "short"));
        var userOnly = await Refused(new CreateExportRequest("v", "b", "iscsi", ChapUser: "u"));
        var mutualAlone = await Refused(new CreateExportRequest("v", "c", "iscsi", MutualChapUser: "t", MutualChapSecret: "target-secret-1"));
        var badIqn = await Refused(new CreateExportRequest("v", "d", "iscsi", Iqn: "not an iqn"));
        var badInitiator = await Refused(new CreateExportRequest("v", "e", "iscsi", AllowedInitiators: ["host1"]));
        var takenIqn = await Refused(new CreateExportRequest("v", "f", "iscsi", Iqn: "iqn.2026-11.dev.tidemark:taken"));
        var missingLun = await Refused(new CreateExportRequest("v", "g", "iscsi", AdditionalTargets: ["ghost"]));
        var sameTwice = await Refused(new CreateExportRequest("v", "h", "iscsi", AdditionalTargets: ["v"]));
        var nbdWithChap = await Refused(new CreateExportRequest("v", "i", "nbd", ChapUser: "u", ChapSecret: "long-enough-secret"));
        var unknown = await Refused(new CreateExportRequest("v", "j", "fcp"));

        Assert.Equal((HttpStatusCode.BadRequest, "invalid-argument"), (shortSecret.Status, shortSecret.Code));
        Assert.Contains("at least 12", shortSecret.Message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, userOnly.Status);
        Assert.Contains("mutual CHAP needs CHAP", mutualAlone.Message, StringComparison.Ordinal);
        Assert.Equal((HttpStatusCode.BadRequest, "invalid-name"), (badIqn.Status, badIqn.Code));
        Assert.Equal(HttpStatusCode.BadRequest, badInitiator.Status);
        Assert.Equal((HttpStatusCode.Conflict, "already-exists"), (takenIqn.Status, takenIqn.Code));
        Assert.Equal(HttpStatusCode.NotFound, missingLun.Status);
        Assert.Equal(HttpStatusCode.BadRequest, sameTwice.Status);
        Assert.Equal(HttpStatusCode.BadRequest, nbdWithChap.Status);
        Assert.Equal(HttpStatusCode.BadRequest, unknown.Status);
        Assert.Equal(["first"], (await Client.ListExportsAsync()).Select(e => e.Name));
    }

    [Fact]
    public async Task DeleteVolumeOrSnapshot_ExportedAsIscsiLun_Returns409BusyUntilExportRemoved()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("app", 8 << 20));
        await Client.CreateVolumeAsync(new CreateVolumeRequest("logs", 8 << 20));
        await Client.CreateSnapshotAsync("logs", "daily");
        await Client.CreateExportAsync(new CreateExportRequest("app", "cluster", "iscsi", AdditionalTargets: ["logs@daily"]));

        var volume = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteVolumeAsync("app"));
        var snapshot = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteSnapshotAsync("logs@daily"));
        var volumeOfSnapshot = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteVolumeAsync("logs"));
        (await Cli("export", "remove", "cluster")).AssertSuccess();
        var inqAfterRemove = await Tool("iscsi-inq", Server.IscsiUrl("iqn.2026-11.dev.tidemark:cluster"));
        await Client.DeleteSnapshotAsync("logs@daily");
        await Client.DeleteVolumeAsync("app");

        Assert.Equal((HttpStatusCode.Conflict, "busy"), (volume.Status, volume.Code));
        Assert.Contains("cluster", volume.Message, StringComparison.Ordinal);
        Assert.Equal((HttpStatusCode.Conflict, "busy"), (snapshot.Status, snapshot.Code));
        Assert.Equal(HttpStatusCode.Conflict, volumeOfSnapshot.Status);
        Assert.NotEqual(0, inqAfterRemove.ExitCode);
        Assert.Empty(await Client.ListExportsAsync());
    }

    [Fact]
    public async Task Restart_IscsiExports_RestoredFromThePoolAndOfflineWhenTargetMissing()
    {
        var data = Server.DataDirectory;
        await Client.CreateVolumeAsync(new CreateVolumeRequest("db", 8 << 20));
        await Client.CreateExportAsync(new CreateExportRequest("db", "secure", "iscsi", AllowedInitiators: [Allowed], ChapUser: "alice", ChapSecret: "alice-secret-12"));
        await Client.CreateExportAsync(new CreateExportRequest("db", "plain", "iscsi"));
        Assert.Equal(0, await Server.StopAsync());
        var secret = StoredState.Read(data, pool => pool.Control.Get(ExportRegistry.Kind, "secure")!.Chap!.Secret);
        StoredState.Change(data, pool =>
        {
            var plain = pool.Control.Get(ExportRegistry.Kind, "plain")!;
            pool.Control.Put(ExportRegistry.Kind, "plain", plain with { Luns = [.. plain.AllTargets, "gone"] });
        });

        await using var restarted = await ServerProcess.StartAsync(data);
        using var client = restarted.Client();
        var exports = await client.ListExportsAsync();
        var inq = (await Tool("iscsi-inq", "-i", Allowed, $"iscsi://alice%alice-secret-12@{restarted.Iscsi}/iqn.2026-11.dev.tidemark:secure/0")).AssertSuccess();
        var offlineInq = await Tool("iscsi-inq", restarted.IscsiUrl("iqn.2026-11.dev.tidemark:plain"));

        Assert.False(File.Exists(Path.Combine(data, "exports.json")));
        Assert.Equal("alice-secret-12", secret);
        Assert.Equal(["plain", "secure"], exports.Select(e => e.Name));
        Assert.Equal(("offline", true), (exports[0].State, exports[0].Problem!.Contains("gone", StringComparison.Ordinal)));
        Assert.Equal(("online", "alice"), (exports[1].State, exports[1].ChapUser));
        Assert.Contains("TIDEMARK", inq.StandardOutput, StringComparison.Ordinal);
        Assert.NotEqual(0, offlineInq.ExitCode);
    }

    private async Task<TidemarkApiException> Refused(CreateExportRequest request) =>
        await Assert.ThrowsAsync<TidemarkApiException>(() => Client.CreateExportAsync(request));

    private Task<ProcessResult> Cli(params string[] arguments) => CliProcess.RunAsync(["--data", Server.DataDirectory, .. arguments]);

    private static Task<ProcessResult> Tool(string tool, params string[] arguments) =>
        ProcessRunner.RunAsync(TimeSpan.FromSeconds(30), tool, arguments);
}
