using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Server.Api;

namespace Tidemark.Server.Events;

/// <summary>
/// Writes one audit event per authenticated API request that changes something (POST, PUT, PATCH,
/// DELETE), whether it worked or not. Requests refused for want of a valid token are not recorded here:
/// <see cref="Api.TokenAuthentication"/> summarizes them in rate-limited "auth.failed" events. The kind is the endpoint's name
/// ("volume.create"); the subject comes from the route ("mail", "mail@monday") or, for a create, from
/// the Location of what was made. Reads are not audited.
/// </summary>
public sealed class AuditMiddleware
{
    public const string ActorItem = "tidemark.actor";
    public const string ProblemItem = "tidemark.problem";

    /// <summary>What a handler adds to its event's message (what a rollback kept, for example).</summary>
    public const string DetailItem = "tidemark.detail";

    private readonly EventLog _events;

    public AuditMiddleware(EventLog events)
    {
        _events = events;
    }

    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        await next(context);
        var status = context.Response.StatusCode;
        if (status == StatusCodes.Status401Unauthorized || context.Items[ActorItem] is null)
        {
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
        var detail = context.Items[DetailItem] is string d ? $": {d}" : "";
        var message = ok
            ? $"{method} {context.Request.Path} -> {status}{detail}"
            : $"{method} {context.Request.Path} -> {status}: {problem ?? "failed"}";
        _events.Record(
            kind,
            Subject(context),
            (string)context.Items[ActorItem]!,
            message,
            ok ? "ok" : "failed",
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
