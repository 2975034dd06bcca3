using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;

namespace Tidemark.Server.Api;

/// <summary>
/// Which role an endpoint needs, in one place so it can be read and reviewed at once. Reads need
/// auditor (every role), except a snapshot stream, which carries a volume's data. Changes need
/// operator, except what destroys data that cannot be recreated, changes who this server trusts or
/// which side of a replica pair is primary, adds host storage, or manages tokens: those need admin.
/// </summary>
public static class ApiRoles
{
    public static IReadOnlySet<string> AdminOnly { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "volume.delete",
        "snapshot.release",
        "pool.add-store",
        "partner.add",
        "partner.remove",
        "host.add",
        "host.remove",
        "replica.delete",
        "replica.promote",
        "replica.reverse",
        "replica.demote",
        "replica.accept",
        "token.create",
        "token.revoke",
        "alerts.thresholds",
    };

    public static string Required(HttpContext context)
    {
        var endpoint = context.GetEndpoint();
        if (endpoint?.Metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName is { } name && AdminOnly.Contains(name))
        {
            return TokenRoles.Admin;
        }

        var method = context.Request.Method;
        if (HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method))
        {
            var pattern = (endpoint as RouteEndpoint)?.RoutePattern.RawText;
            return pattern is not null && pattern.EndsWith("/stream", StringComparison.Ordinal) ? TokenRoles.Operator : TokenRoles.Auditor;
        }

        return TokenRoles.Operator;
    }

    public static bool Allows(string role, string needed) => TokenRoles.Rank(role) >= TokenRoles.Rank(needed);
}
