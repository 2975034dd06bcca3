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
