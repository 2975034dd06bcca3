using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Server.Api;

namespace Tidemark.Server.Events;

/// <summary>
/// Writes one audit event per authenticated API request that changes something (POST, PUT, PATCH,
/// DELETE), whether it worked or not. Requests refused for want of a valid token are not recorded here:
/// <see cref="Api.TokenAuthentication"/> summarizes them in rate-limited "auth.failed" events. The kind is the endpoint's name
/// ("volume.create"); the subject comes from the route ("mail", "mail@monday") or, for a create, from
/// the Location of what was made. Reads are not audited. Failed requests are recorded up to
/// <see cref="MaxFailedPerActorPerMinute"/> per actor a minute and counted beyond that (the next one
/// recorded says how many were left out); most failures go to the separate refused log
/// (<see cref="IsNoise"/>), so a script looping on a refused request cannot push real history out of
/// the main log either; successful changes are always recorded there.
/// </summary>
public sealed class AuditMiddleware
{
    public const string ActorItem = "tidemark.actor";
    public const string ProblemItem = "tidemark.problem";

    /// <summary>What a handler adds to its event's message (what a rollback kept, for example).</summary>
    public const string DetailItem = "tidemark.detail";

    public const int MaxFailedPerActorPerMinute = 30;

    private readonly EventLog _events;
    private readonly TimeProvider _time;
    private readonly Lock _failedLock = new();

    // One entry per actor that failed recently: tokens (at most TokenStore.MaxTokens) and partners.
    private readonly Dictionary<string, FailedWindow> _failed = new(StringComparer.Ordinal);

    public AuditMiddleware(EventLog events, TimeProvider time)
    {
        _events = events;
        _time = time;
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
        var actor = (string)context.Items[ActorItem]!;
        var leftOut = 0L;
        if (!ok && !ShouldRecordFailure(actor, out leftOut))
        {
            return;
        }

        var message = ok
            ? $"{method} {context.Request.Path} -> {status}{detail}"
            : $"{method} {context.Request.Path} -> {status}: {problem ?? "failed"}{(leftOut > 0 ? $" ({leftOut} more failed requests by {actor} were not recorded one by one)" : "")}";
        var remote = context.Connection.RemoteIpAddress?.ToString();
        if (!ok && IsNoise(kind, status))
        {
            _events.RecordRefused(kind, Subject(context), actor, message, "failed", remote);
        }
        else
        {
            _events.Record(kind, Subject(context), actor, message, ok ? "ok" : "failed", remote);
        }
    }

    /// <summary>
    /// Whether a failed request goes to the refused log rather than the main one (ADR 0007): every
    /// failure except a 403 (a valid token reaching past its role is security-relevant) and failures on
    /// tokens and partners (who may use this server). Successful changes are never noise.
    /// </summary>
    public static bool IsNoise(string kind, int status) =>
        status >= 400
        && status != StatusCodes.Status403Forbidden
        && !IsFamily(kind, "token")
        && !IsFamily(kind, "partner");

    private static bool IsFamily(string kind, string family) =>
        kind.StartsWith(family, StringComparison.Ordinal) && kind.Length > family.Length && kind[family.Length] == '.';

    private bool ShouldRecordFailure(string actor, out long leftOut)
    {
        lock (_failedLock)
        {
            var now = _time.GetUtcNow();
            var window = _failed.TryGetValue(actor, out var w) && now - w.Start < TimeSpan.FromMinutes(1) ? w : new FailedWindow(now, 0, w?.LeftOut ?? 0);
            if (window.Recorded >= MaxFailedPerActorPerMinute)
            {
                _failed[actor] = window with { LeftOut = window.LeftOut + 1 };
                leftOut = 0;
                return false;
            }

            leftOut = window.LeftOut;
            _failed[actor] = new FailedWindow(window.Start, window.Recorded + 1, 0);
            return true;
        }
    }

    private sealed record FailedWindow(DateTimeOffset Start, int Recorded, long LeftOut);

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
