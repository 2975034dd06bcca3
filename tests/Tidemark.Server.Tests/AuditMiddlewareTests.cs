using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Tidemark.Server.Events;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>A token holder looping on a refused request cannot flood the audit log; successful changes are always recorded.</summary>
public sealed class AuditMiddlewareTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task FailedRequests_PastThePerActorLimit_AreCounted_NotRecordedOneByOne()
    {
        using var log = new EventLog(_temp.Combine("events.jsonl"), _time, NullLogger.Instance);
        var audit = new AuditMiddleware(log, _time);

        for (var i = 0; i < 100; i++)
        {
            await RequestAsync(audit, "bob", StatusCodes.Status403Forbidden);
        }

        await RequestAsync(audit, "bob", StatusCodes.Status204NoContent);
        await RequestAsync(audit, "alice", StatusCodes.Status403Forbidden);
        _time.Advance(TimeSpan.FromMinutes(1));
        await RequestAsync(audit, "bob", StatusCodes.Status403Forbidden);

        var events = log.Query(limit: 1000);
        Assert.Equal(AuditMiddleware.MaxFailedPerActorPerMinute + 3, events.Count);
        Assert.Equal("ok", events[AuditMiddleware.MaxFailedPerActorPerMinute].Outcome);
        Assert.Equal("alice", events[^2].Actor);
        Assert.Contains($"{100 - AuditMiddleware.MaxFailedPerActorPerMinute} more failed requests by bob", events[^1].Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RefusedFlood_RotatingTheRefusedLogSeveralTimes_LeavesEveryRealEventInPlace()
    {
        // A main log of 16 KiB: without the split, the flood below (~150 KiB) would rotate it out many times over.
        using var log = new EventLog(_temp.Combine("events.jsonl"), _time, NullLogger.Instance, maxFileBytes: 16 << 10, refusedMaxFileBytes: 4096);
        var audit = new AuditMiddleware(log, _time);
        await RequestAsync(audit, "alice", StatusCodes.Status204NoContent);
        log.Record("volume.rollback", "mail", "alice", "rolled back to mail@monday");
        await RequestAsync(audit, "mallory", StatusCodes.Status403Forbidden);
        for (var minute = 0; minute < 20; minute++)
        {
            foreach (var actor in new[] { "bob", "carol" })
            {
                for (var i = 0; i < AuditMiddleware.MaxFailedPerActorPerMinute; i++)
                {
                    await RequestAsync(audit, actor, StatusCodes.Status404NotFound);
                }
            }

            log.RecordRefused("auth.failed", null, "anonymous", $"flood minute {minute}");
            _time.Advance(TimeSpan.FromMinutes(1));
        }

        await RequestAsync(audit, "alice", StatusCodes.Status204NoContent);

        var main = log.Query(log: EventLog.MainLog, limit: 1000);
        var verify = log.Verify();
        var refusedFiles = Directory.GetFiles(_temp.Path, "events-refused*.jsonl");
        Assert.Equal([1L, 2L, 3L, 4L], main.Select(e => e.Sequence));
        Assert.Equal(["alice", "alice", "mallory", "alice"], main.Select(e => e.Actor));
        Assert.Equal("failed", main[2].Outcome); // a valid token reaching past its role is not noise
        Assert.True(verify.Ok, string.Join("; ", verify.Problems.Select(p => $"{p.Log} {p.File}: {p.Problem}")));
        Assert.Equal(4, verify.Checked);
        Assert.Equal(1200 + 20, verify.Refused!.LastSequence);
        Assert.True(verify.Refused.FirstSequence > 1000, $"the refused log rotated several times, oldest kept {verify.Refused.FirstSequence}");
        Assert.Equal(EventLog.RefusedGenerations, refusedFiles.Length);
        Assert.All(refusedFiles, f => Assert.True(new FileInfo(f).Length <= 4096, $"{f} is {new FileInfo(f).Length} bytes"));

        // The merged list shows both logs in time order, each record naming its log.
        var merged = log.Query(limit: 10);
        Assert.Equal(EventLog.MainLog, merged[^1].Log);
        Assert.Contains(merged, e => e.Log == EventLog.RefusedLog && e.Actor == "carol");
        Assert.Equal(merged.OrderBy(e => e.Time).Select(e => e.Time), merged.Select(e => e.Time));
    }

    [Theory]
    [InlineData("volume.delete", 404, true)]
    [InlineData("volume.create", 409, true)]
    [InlineData("api.post", 500, true)]
    [InlineData("volume.delete", 403, false)]
    [InlineData("token.create", 400, false)]
    [InlineData("token.revoke", 404, false)]
    [InlineData("partner.add", 409, false)]
    [InlineData("partners.weird", 404, true)]
    [InlineData("volume.delete", 204, false)]
    [InlineData("token.create", 201, false)]
    public void IsNoise_OnlyFailuresThatAreNotSecurityRelevant(string kind, int status, bool noise) =>
        Assert.Equal(noise, AuditMiddleware.IsNoise(kind, status));

    private static Task RequestAsync(AuditMiddleware audit, string actor, int status)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = HttpMethods.Delete;
        context.Request.Path = "/api/v1/volumes/db";
        context.Items[AuditMiddleware.ActorItem] = actor;
        return audit.InvokeAsync(context, c =>
        {
            c.Response.StatusCode = status;
            return Task.CompletedTask;
        });
    }
}
