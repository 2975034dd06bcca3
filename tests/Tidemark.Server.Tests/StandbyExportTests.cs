using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Exports prepared at the DR site in advance (`replica create --standby-export`): nothing is exported
/// while the volume is a replica; promotion, with the primary gone, brings them up and real clients
/// reach the volume through them.
/// </summary>
public sealed class StandbyExportTests : TwoSiteTests
{
    private const string StandbyInitiator = "iqn.2026-11.test:standby-mail";


    [Fact]
    public async Task Promote_WithThePrimaryGone_BringsUpThePreparedNbdAndIscsiExports()
    {
        using var home = Home.Client();
        using var dr = Dr.Client();
        await Pairing.PairAsync(Home, "dr", Dr, "home");
        await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var export = await home.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await Sites.WriteRandomAsync(export.Url!, 0, 1 << 20);

        var bad = await CliProcess.RunAsync("replica", "create", "mail", "--to", "dr", "--standby-export", "ftp:mail", "--data", Home.DataDirectory);
        Assert.NotEqual(0, bad.ExitCode);
        Assert.Contains("nbd:NAME", bad.StandardError, StringComparison.Ordinal);
        (await CliProcess.RunAsync(
            "replica",
            "create",
            "mail",
            "--to",
            "dr",
            "--standby-export",
            "nbd:mail-dr",
            "--standby-export",
            "iscsi",
            "--standby-initiator",
            StandbyInitiator,
            "--data",
            Home.DataDirectory)).AssertSuccess();
        var synced = await home.SyncReplicaAsync("mail");

        // A replica: prepared, not exported.
        Assert.Empty(await dr.ListExportsAsync());
        var prepared = Assert.Single(await dr.ListIncomingAsync()).StandbyExports;
        Assert.Equal(["mail-dr", "mail"], prepared!.Select(e => e.Name));
        Assert.Equal(2, synced.StandbyExports!.Count);

        // The primary site is lost; the DR site promotes.
        await Home.KillAsync();
        var promoted = await dr.PromoteReplicaAsync("mail");

        Assert.Contains("standby export mail-dr (nbd) is up", promoted.Note, StringComparison.Ordinal);
        var exports = await dr.ListExportsAsync();
        var nbd = Assert.Single(exports, e => e.Protocol == "nbd");
        var iscsi = Assert.Single(exports, e => e.Protocol == "iscsi");
        Assert.Equal(("mail-dr", "mail", false), (nbd.Name, nbd.Target, nbd.ReadOnly));
        Assert.Equal([StandbyInitiator], iscsi.AllowedInitiators);
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"read -v 0 16", "-c", "write -P 0x42 2m 64k", "-c", "read -P 0x42 2m 64k", nbd.Url!)).AssertSuccess();
        var inquiry = await ProcessRunner.RunAsync("iscsi-inq", "-i", StandbyInitiator, iscsi.Luns![0].Url!);
        inquiry.AssertSuccess();
        var refused = await ProcessRunner.RunAsync("iscsi-inq", "-i", "iqn.2026-11.test:somebody-else", iscsi.Luns![0].Url!);
        Assert.NotEqual(0, refused.ExitCode);
    }
}
