using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Server.Events;

namespace Tidemark.Server.Api;

/// <summary>GET /api/v1/events: the event and audit log, filtered and paged (see <see cref="EventLog.Query"/>); /verify checks its hash chain.</summary>
public static class EventEndpoints
{
    public static void MapEventApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/events", (EventLog log, long? after, string? kind, string? subject, DateTimeOffset? since, int? limit) =>
            TypedResults.Ok(log.Query(after, kind, subject, since, limit ?? 100)))
            .WithTags("events");
        app.MapGet("/api/v1/events/verify", (EventLog log) => TypedResults.Ok(log.Verify())).WithTags("events");
    }
}
