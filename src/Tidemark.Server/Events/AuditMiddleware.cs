using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Server.Api;

namespace Tidemark.Server.Events;

/// <summary>
/// Writes one audit event per API request that changes something (POST, PUT, PATCH, DELETE), whether it
/// worked or not, and one per refused authentication. The kind is the endpoint's name
/// ("volume.create"); the subject comes from the route ("mail", "mail@monday") or, for a create, from
/// the Location of what was made. Reads are not audited.
/// </summary>
public sealed class AuditMiddleware
{
    public const string ActorItem = "tidemark.actor";
    public const string ProblemItem = "tidemark.problem";

    private readonly EventLog _events;
    private readonly TimeProvider _time;
    private readonly Lock _refusedLock = new();
    private DateTimeOffset _lastRefused = DateTimeOffset.MinValue;
    private long _suppressedRefusals;

    public AuditMiddleware(EventLog events, TimeProvider time)
    {
        _events = events;
        _time = time;
    }

    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        await next(context);
        var status = context.Response.StatusCode;
        if (status == StatusCodes.Status401Unauthorized)
        {
            RecordRefusal(context);
            return;
        }

        var method = context.Request.Method;
        if (HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method))
        {
            return;
        }

        var endpoint = context.GetEndpoint();
        var kind = endpoint?.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName
            ?? $"api.{method.ToLowerInvariant()}";
        var ok = status < 400;
        var problem = context.Items[ProblemItem] as string;
        var message = ok
            ? $"{method} {context.Request.Path} -> {status}"
            : $"{method} {context.Request.Path} -> {status}: {problem ?? "failed"}";
        _events.Record(
            kind,
            Subject(context),
            context.Items[ActorItem] as string ?? "anonymous",
            message,
            ok ? "ok" : "failed",
            context.Connection.RemoteIpAddress?.ToString());
    }

    /// <summary>A client hammering with a wrong token would fill the log: at most one refusal event per second, with the count of the rest.</summary>
    private void RecordRefusal(HttpContext context)
    {
        long suppressed;
        lock (_refusedLock)
        {
            var now = _time.GetUtcNow();
            if (now - _lastRefused < TimeSpan.FromSeconds(1))
            {
                _suppressedRefusals++;
                return;
            }

            _lastRefused = now;
            suppressed = _suppressedRefusals;
            _suppressedRefusals = 0;
        }

        var more = suppressed > 0 ? $" ({suppressed} more refused since the last such event)" : "";
        _events.Record(
            "auth.refused",
            null,
            "anonymous",
            $"{context.Request.Method} {context.Request.Path} without a valid token{more}",
            "failed",
            context.Connection.RemoteIpAddress?.ToString());
    }

    private static string? Subject(HttpContext context)
    {
        // A create names what it made in its Location; that is the subject, not the collection it was made in.
        var location = context.Response.Headers.Location.ToString();
        if (location.Length > 0)
        {
            var parts = location.Split('/', StringSplitOptions.RemoveEmptyEntries).Select(Uri.UnescapeDataString).ToArray();
            var snapshots = Array.IndexOf(parts, "snapshots");
            return snapshots > 0 && snapshots + 1 < parts.Length
                ? $"{parts[snapshots - 1]}@{parts[snapshots + 1]}"
                : parts[^1];
        }

        var values = context.Request.RouteValues;
        string? Value(string key) => values.TryGetValue(key, out var v) ? v?.ToString() : null;
        if (Value("volume") is { } volume)
        {
            return Value("snapshot") is { } snapshot ? $"{volume}@{snapshot}" : volume;
        }

        return Value("name") ?? Value("id");
    }
}
