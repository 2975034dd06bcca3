using System.Net;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// POST /api/v1/recoveries/mail on a real server: a request naming no snapshot, an unknown host or
/// snapshot, or an export path is refused before any job or view exists; a recovery host whose agent
/// does not answer fails the job with the reason, deletes the view, and records the event.
/// </summary>
public sealed class MailRecoveryJobApiTests : ServerTest
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await client.CreateSnapshotAsync("mail", "monday");

        // A host whose agent is not there: nothing listens on port 1.
        await client.AddHostAsync(new AddHostRequest("gone", "127.0.0.1:1", new string('a', 64)));
    }

    [Theory]
    [InlineData("nobody", "mail@monday", null, null, null, HttpStatusCode.NotFound, "no host nobody")]
    [InlineData("gone", null, null, null, null, HttpStatusCode.BadRequest, "give the snapshot")]
    [InlineData("gone", "mail@tuesday", null, null, null, HttpStatusCode.NotFound, "tuesday")]
    [InlineData("gone", "mail@monday", "mail", null, null, HttpStatusCode.BadRequest, "not both")]
    [InlineData("gone", null, "mail", "2000-01-01T00:00:00Z", null, HttpStatusCode.NotFound, "no snapshot taken before")]
    [InlineData("gone", "mail@monday", null, null, "../../etc", HttpStatusCode.BadRequest, "export name")]
    public async Task Start_BadRequest_RefusedBeforeAnyJobOrView(string host, string? snapshot, string? volume, string? before, string? exportName, HttpStatusCode status, string message)
    {
        using var client = Server.Client();
        var target = exportName is null ? null : new MailTargetDto(MailTargetDto.Export, ExportName: exportName);

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => client.RecoverMailAsync(new MailRecoveryJobRequest(host, snapshot, volume, before is null ? null : DateTimeOffset.Parse(before, System.Globalization.CultureInfo.InvariantCulture), Target: target)));

        Assert.Equal(status, error.Status);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(await client.ListJobsAsync(), j => j.Kind == "recovery.mail");
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));
    }

    [Fact]
    public async Task Start_AgentUnreachable_JobFailsWithReason_ViewDeleted_EventRecorded()
    {
        using var client = Server.Client();

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => client.RecoverMailAsync(new MailRecoveryJobRequest("gone", Volume: "mail", Before: DateTimeOffset.UtcNow.AddMinutes(1), Filter: new MailFilterDto(["alice"]))));

        Assert.Contains("did not answer", error.Message, StringComparison.Ordinal);
        var job = Assert.Single(await client.ListJobsAsync(), j => j.Kind == "recovery.mail");
        Assert.Equal("failed", job.State);
        Assert.Equal("mail@monday", job.Subject);
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));
        Assert.Empty(await client.ListExportsAsync());
        var recovery = Assert.Single(await client.ListEventsAsync(), e => e.Kind == "recovery.mail");
        Assert.Equal("failed", recovery.Outcome);
        Assert.Equal("mail@monday", recovery.Subject);
        Assert.Contains("on host gone", recovery.Message, StringComparison.Ordinal);
        Assert.Contains("did not answer", recovery.Message, StringComparison.Ordinal);

        // The request itself is audited under its own kind, naming the job, not as a second recovery.
        Assert.Contains(await client.ListEventsAsync(), e => e.Kind == "recovery.start" && e.Subject == job.Id);
    }
}
