using System.Diagnostics;
using System.Net;
using Tidemark.Api;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// A rollback changes the image under every client of the volume: it is refused while NBD connections
/// or iSCSI sessions are attached (naming them), and --force ends them first, asking iSCSI
/// initiators to log out (RFC 7143 11.9.1) and closing NBD connections.
/// </summary>
public sealed class RollbackGuardTests : ServerTest
{
    private const string Initiator = "iqn.2026-11.dev.tidemark.test:app-host";

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await Client.CreateVolumeAsync(new CreateVolumeRequest("db", 8 << 20));
        await Client.CreateSnapshotAsync("db", "monday");
    }

    [Fact]
    public async Task Rollback_NbdClientAttached_RefusedNamingClientThenForceClosesIt()
    {
        await Client.CreateExportAsync(new CreateExportRequest("db"));
        using var nbd = await AttachedNbdClient.ConnectAsync(Server.Nbd, "db");

        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.RollbackAsync("db", "monday"));
        var cli = await Cli("volume", "rollback", "db", "monday");
        var forced = await Client.RollbackAsync("db", "monday", force: true);
        var closed = await nbd.ClosedByServerAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(HttpStatusCode.Conflict, refused.Status);
        Assert.Contains($"nbd client {nbd.LocalEndpoint}", refused.Message, StringComparison.Ordinal);
        Assert.Contains("--force", refused.Message, StringComparison.Ordinal);
        Assert.Equal(1, cli.ExitCode);
        Assert.Contains($"nbd client {nbd.LocalEndpoint}", cli.StandardError, StringComparison.Ordinal);
        Assert.Equal([new ClientSessionDto("nbd", nbd.LocalEndpoint.ToString(), null, "db")], forced.EndedSessions!);
        Assert.NotNull(forced.PreRollbackSnapshot);
        Assert.True(closed);
    }

    [Fact]
    public async Task Rollback_IscsiSessionAttached_RefusedNamingInitiatorThenForceAsksItToLogOut()
    {
        var export = await Client.CreateExportAsync(new CreateExportRequest("db", "db-iscsi", "iscsi"));
        using var session = await AttachedIscsiSession.LoginAsync(Server.Iscsi, Initiator, export.Iqn!);

        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.RollbackAsync("db", "monday"));
        var answering = session.AnswerLogoutRequestAsync(TimeSpan.FromSeconds(30));
        var forced = await Cli("volume", "rollback", "db", "monday", "--force");
        var asked = await answering;
        var closed = await session.ClosedByTargetAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(HttpStatusCode.Conflict, refused.Status);
        Assert.Contains($"iscsi initiator {Initiator} at 127.0.0.1:", refused.Message, StringComparison.Ordinal);
        forced.AssertSuccess();
        Assert.Contains($"ended iscsi session of {Initiator} at 127.0.0.1:", forced.StandardOutput, StringComparison.Ordinal);
        Assert.Equal((AsyncEvent.LogoutRequest, (ushort)5), asked);
        Assert.True(closed);
    }

    [Fact]
    public async Task Rollback_QemuIoAttached_RefusedUntilForced()
    {
        var export = await Client.CreateExportAsync(new CreateExportRequest("db"));

        // qemu-io (qemu-utils) opens the export and holds it while it sleeps, as a VM's disk would.
        using var qemu = Process.Start(new ProcessStartInfo("qemu-io", ["-f", "raw", "-c", "read 0 4k", "-c", "sleep 60000", export.Url!])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        try
        {
            TidemarkApiException? refused = null;
            for (var attempt = 0; attempt < 100 && refused is null; attempt++)
            {
                refused = await RefusedAsync();
            }

            var forced = await Client.RollbackAsync("db", "monday", force: true);

            Assert.NotNull(refused);
            Assert.Contains("1 connected client (nbd client 127.0.0.1:", refused.Message, StringComparison.Ordinal);
            Assert.Equal("nbd", Assert.Single(forced.EndedSessions!).Protocol);
        }
        finally
        {
            qemu.Kill();
            await qemu.WaitForExitAsync();
        }

        // Until qemu-io has connected a plain rollback goes through; each keeps a pre-rollback snapshot.
        async Task<TidemarkApiException?> RefusedAsync()
        {
            try
            {
                await Client.RollbackAsync("db", "monday");
                await Task.Delay(100);
                return null;
            }
            catch (TidemarkApiException ex) when (ex.Status == HttpStatusCode.Conflict)
            {
                return ex;
            }
        }
    }

    [Fact]
    public async Task Delete_ExportRemovedButClientStillAttached_RefusedNamingIt()
    {
        await Client.CreateExportAsync(new CreateExportRequest("db"));
        await Client.CreateExportAsync(new CreateExportRequest("db@monday", "monday"));
        using var live = await AttachedNbdClient.ConnectAsync(Server.Nbd, "db");
        using var snapshot = await AttachedNbdClient.ConnectAsync(Server.Nbd, "monday");
        await Client.DeleteExportAsync("db");
        await Client.DeleteExportAsync("monday");

        var volume = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteVolumeAsync("db"));
        var snap = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteSnapshotAsync("db@monday"));

        Assert.Equal(HttpStatusCode.Conflict, volume.Status);
        Assert.Contains("deleting db would remove db, db@monday under 2 connected clients", volume.Message, StringComparison.Ordinal);
        Assert.Contains($"nbd client {live.LocalEndpoint}", volume.Message, StringComparison.Ordinal);
        Assert.Contains($"nbd client {snapshot.LocalEndpoint}", volume.Message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Conflict, snap.Status);
        Assert.Contains($"(nbd client {snapshot.LocalEndpoint})", snap.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeleteVolume_OnlyASnapshotReaderStillAttached_RefusedNamingTheSnapshot()
    {
        await Client.CreateExportAsync(new CreateExportRequest("db@monday", "monday"));
        using var reader = await AttachedNbdClient.ConnectAsync(Server.Nbd, "monday");
        await Client.DeleteExportAsync("monday");

        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteVolumeAsync("db"));

        Assert.Equal(HttpStatusCode.Conflict, refused.Status);
        Assert.Contains($"deleting db would remove db@monday under 1 connected client (nbd client {reader.LocalEndpoint})", refused.Message, StringComparison.Ordinal);
        Assert.Contains("db", (await Client.ListVolumesAsync()).Select(v => v.Name));
    }

    [Fact]
    public async Task Rollback_ClientsOnOtherTargets_NotRefused()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("web", 8 << 20));
        await Client.CreateExportAsync(new CreateExportRequest("web"));
        await Client.CreateExportAsync(new CreateExportRequest("db@monday"));
        using var other = await AttachedNbdClient.ConnectAsync(Server.Nbd, "web");
        using var snapshotReader = await AttachedNbdClient.ConnectAsync(Server.Nbd, "db@monday");

        var result = await Client.RollbackAsync("db", "monday");

        Assert.Empty(result.EndedSessions ?? []);
        Assert.False(await other.ClosedByServerAsync(TimeSpan.FromMilliseconds(200)));
        Assert.False(await snapshotReader.ClosedByServerAsync(TimeSpan.FromMilliseconds(200)));
    }

    [Fact]
    public async Task Rollback_ForceWithUnknownSnapshot_FailsAndKeepsSessions()
    {
        await Client.CreateExportAsync(new CreateExportRequest("db"));
        using var nbd = await AttachedNbdClient.ConnectAsync(Server.Nbd, "db");

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.RollbackAsync("db", "tuesday", force: true));

        Assert.Equal(HttpStatusCode.NotFound, error.Status);
        Assert.False(await nbd.ClosedByServerAsync(TimeSpan.FromMilliseconds(200)));
    }

    [Fact]
    public async Task ImportIncremental_ClientAttachedToTarget_RefusedAndVolumeUnchanged()
    {
        var full = Temp.Combine("monday.tmstream");
        var delta = Temp.Combine("tuesday.tmstream");
        (await Cli("snapshot", "export", "db@monday", full)).AssertSuccess();
        await Client.CreateSnapshotAsync("db", "tuesday");
        (await Cli("snapshot", "export", "db@tuesday", delta, "--from", "db@monday")).AssertSuccess();
        (await Cli("snapshot", "import", full, "--volume", "copy")).AssertSuccess();
        await Client.CreateExportAsync(new CreateExportRequest("copy"));
        using var nbd = await AttachedNbdClient.ConnectAsync(Server.Nbd, "copy");

        var refused = await Cli("snapshot", "import", delta, "--volume", "copy");
        var snapshots = await Client.ListSnapshotsAsync("copy");

        Assert.Equal(1, refused.ExitCode);
        Assert.Contains($"importing tuesday into copy would change copy under 1 connected client (nbd client {nbd.LocalEndpoint})", refused.StandardError, StringComparison.Ordinal);
        Assert.Equal(["monday"], snapshots.Select(s => s.Name));
    }

    private Task<ProcessResult> Cli(params string[] arguments) => CliProcess.RunAsync(["--data", Server.DataDirectory, .. arguments]);
}
