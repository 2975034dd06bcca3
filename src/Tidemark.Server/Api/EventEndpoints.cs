using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Server.Events;

namespace Tidemark.Server.Api;

/// <summary>GET /api/v1/events: the event and audit log, filtered and paged (see <see cref="EventLog.Query"/>); /verify checks both hash chains.</summary>
public static class EventEndpoints
{
    public static void MapEventApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/events", (EventLog events, long? after, string? kind, string? subject, DateTimeOffset? since, int? limit, string? log) =>
            TypedResults.Ok(events.Query(after, kind, subject, since, limit ?? 100, log)))
            .WithTags("events");
        app.MapGet("/api/v1/events/verify", (EventLog log) => TypedResults.Ok(log.Verify())).WithTags("events");
    }
}
