using System.Net;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The throwaway views of recoveries (RecoveryViews): a server's mail recovery job and a recovery
/// host's mount (POST /views with purpose "recovery") mark theirs before making it. A server killed
/// mid-recovery leaves the view and its export; the next start deletes every marked one with an
/// event, and never a view an operator named recover-something.
/// </summary>
public sealed class RecoveryViewTests : ServerTest
{
    [Fact]
    public async Task Restart_RecoveryViewsLeftByKilledServer_DeletedWithExportsAndEvents_OperatorsRecoverViewKept()
    {
        // An agent that takes the connection and never answers: the job stays in its agent call.
        using var silent = SilentAgent.Start();
        const string hostView = "recover-mail-20261207-061500-a1b2c3";
        var client = Client;
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await client.CreateSnapshotAsync("mail", "monday");
        await client.CreateViewAsync("mail@monday", "recover-x"); // an operator's
        await client.CreateExportAsync(new CreateExportRequest(Target: "recover-x", Name: "recover-x"));
        await client.CreateViewAsync(new CreateViewRequest("mail@monday", hostView, CreateViewRequest.RecoveryPurpose));
        await client.CreateExportAsync(new CreateExportRequest(Target: hostView, Name: hostView));
        var done = new CreateViewRequest("mail@monday", "recover-mail-done", CreateViewRequest.RecoveryPurpose);
        await client.CreateViewAsync(done);
        await client.DeleteVolumeAsync(done.Name); // a recovery that ended: its mark goes with it...
        await client.CreateViewAsync("mail@monday", done.Name); // ...so an operator's view of that name later is not taken for it
        var purpose = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreateViewAsync(new CreateViewRequest("mail@monday", "v", "backup")));
        Assert.Equal(HttpStatusCode.BadRequest, purpose.Status);
        Assert.Contains("purpose is 'recovery'", purpose.Message, StringComparison.Ordinal);

        await client.AddHostAsync(new AddHostRequest("silent", silent.Address, new string('a', 64)));
        var pending = client.RecoverMailAsync(new MailRecoveryJobRequest("silent", "mail@monday", Filter: new MailFilterDto(["alice"])));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!(await client.ListVolumesAsync()).Any(v => v.Name.StartsWith("recover-mail-2", StringComparison.Ordinal) && v.Name != hostView))
        {
            Assert.True(DateTime.UtcNow < deadline, "the recovery job made no view");
            await Task.Delay(50);
        }

        var jobView = (await client.ListVolumesAsync()).Single(v => v.Name.StartsWith("recover-mail-2", StringComparison.Ordinal) && v.Name != hostView).Name;
        await Server.KillAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => pending);
        await Server.DisposeAsync();
        Server = await ServerProcess.StartAsync(Data);
        var volumes = (await Client.ListVolumesAsync()).Select(v => v.Name).ToList();
        var exports = (await Client.ListExportsAsync()).Select(e => e.Name).ToList();
        var events = await Client.ListEventsAsync();

        Assert.Equal(["mail", "recover-mail-done", "recover-x"], volumes.Order(StringComparer.Ordinal));
        Assert.Equal(["recover-x"], exports);
        foreach (var view in new[] { hostView, jobView })
        {
            var deleted = Assert.Single(events, e => e.Kind == "volume.delete" && e.Subject == view);
            Assert.Equal(("server", "ok"), (deleted.Actor, deleted.Outcome));
            Assert.StartsWith($"deleted view {view} (of mail@monday) left by a recovery interrupted at the last stop (", deleted.Message, StringComparison.Ordinal);
        }

        Assert.Contains("mail recovery job ", events.Single(e => e.Subject == jobView && e.Kind == "volume.delete").Message, StringComparison.Ordinal);
        Assert.DoesNotContain(events, e => e.Kind == "volume.delete" && e.Subject is "recover-x" or "recover-mail-done" && e.Actor == "server");
    }
}
