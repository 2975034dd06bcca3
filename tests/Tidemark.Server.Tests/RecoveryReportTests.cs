using System.Net;
using Tidemark.Api;
using Tidemark.Server.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Every recovery is an event (issue 23): a recovery host reports what it did with a snapshot, and a
/// real server records it under the token's name in the hash-chained log, refusing reports that name
/// no snapshot or would flood the log.
/// </summary>
public sealed class RecoveryReportTests : ServerTest
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await client.CreateSnapshotAsync("mail", "monday");
    }

    [Fact]
    public async Task Report_RecordedAsRecoveryEvent_WithActorSnapshotMessagesAndDestination()
    {
        using var client = Server.Client();
        var report = new RecoveryReportDto("imap 127.0.0.1:143 as master into Recovered/2026-12-06", 2, 1, 1, 0, ["alice/INBOX <q3@x>: restored", "alice/INBOX <q4@x>: skipped-duplicate"]);

        var recorded = await client.ReportMailRecoveryAsync("mail@monday", report);

        var events = await client.ListEventsAsync();
        var recovery = Assert.Single(events, e => e.Kind == "recovery.mail");
        Assert.Equal(recorded.Sequence, recovery.Sequence);
        Assert.Equal("mail@monday", recovery.Subject);
        Assert.Equal(TokenStore.FirstTokenName, recovery.Actor);
        Assert.Equal("ok", recovery.Outcome);
        Assert.Contains("imap 127.0.0.1:143", recovery.Message, StringComparison.Ordinal);
        Assert.Contains("alice/INBOX <q3@x>: restored", recovery.Message, StringComparison.Ordinal);
        Assert.Contains("1 restored, 1 already there", recovery.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FailedRecovery_RecordedAsFailed_WithTheReason()
    {
        using var client = Server.Client();

        await client.ReportMailRecoveryAsync("mail@monday", new RecoveryReportDto("smtp mx:25 to admin@example.com", 1, 0, 0, 1, [], Error: "cannot reach the SMTP server"));

        var recovery = Assert.Single(await client.ListEventsAsync(), e => e.Kind == "recovery.mail");
        Assert.Equal("failed", recovery.Outcome);
        Assert.Contains("cannot reach the SMTP server", recovery.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownSnapshot_NotFound_NothingRecorded()
    {
        using var client = Server.Client();

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => client.ReportMailRecoveryAsync("mail@never", new RecoveryReportDto("list (dry run)", 0, 0, 0, 0, [])));

        Assert.Equal(HttpStatusCode.NotFound, error.Status);
        Assert.DoesNotContain(await client.ListEventsAsync(), e => e.Kind == "recovery.mail");
    }

    [Theory]
    [InlineData(RecoveryReportDto.MaxMessages + 1, "line")]
    [InlineData(1, "line\nforged: event")]
    public async Task FloodOrForgedLines_Refused(int count, string line)
    {
        using var client = Server.Client();

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => client.ReportMailRecoveryAsync("mail@monday", new RecoveryReportDto("list (dry run)", count, 0, 0, 0, [.. Enumerable.Repeat(line, count)])));

        Assert.Equal(HttpStatusCode.BadRequest, error.Status);
        Assert.DoesNotContain(await client.ListEventsAsync(), e => e.Kind == "recovery.mail");
    }
}
