using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Server.Api;
using Tidemark.Server.Events;

namespace Tidemark.Server.Replication;

/// <summary>
/// Splits the two doors of the HTTP server. Connections on the replication listener (marked when
/// accepted) were admitted by TLS only with a partner's certificate; here they may reach
/// /replication/v1 and nothing else, and act as "partner:NAME". Connections on the API listener need
/// an API token first (so anonymous requests are refused and throttled like any other) and then
/// cannot reach /replication/v1 at all. What is a replication request is decided by the router's own
/// match (it ignores letter case), with a case-insensitive prefix check for paths it matched to nothing.
/// </summary>
public sealed class ReplicationGate
{
    public const string ConnectionMark = "tidemark.replication";

    private readonly TokenAuthentication _token;
    private readonly PartnerRegistry _partners;

    public ReplicationGate(TokenAuthentication token, PartnerRegistry partners)
    {
        _token = token;
        _partners = partners;
    }

    public Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        var onReplicationListener = context.Features.Get<IConnectionItemsFeature>()?.Items.ContainsKey(ConnectionMark) == true;
        var replicationPath = IsReplicationRequest(context);
        if (!onReplicationListener)
        {
            return _token.InvokeAsync(context, replicationPath ? NotOnThisListener : next);
        }

        // The registry may have dropped the partner since the TLS handshake: check again per request.
        var certificate = context.Connection.ClientCertificate;
        var partner = certificate is null ? null : _partners.FindByFingerprint(ServerIdentity.FingerprintOf(certificate));
        if (partner is null)
        {
            var caller = certificate is null ? "" : $" (run 'tidemark partner add NAME IP:PORT --fingerprint {ServerIdentity.FingerprintOf(certificate)}' at it)";
            return Problems.WriteAsync(context, StatusCodes.Status403Forbidden, "unknown-partner", "Forbidden", $"this server is not paired with yours{caller}; pair both ways with 'tidemark partner add'");
        }

        if (!replicationPath)
        {
            return Problems.WriteAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, "Not found", "the replication listener serves only /replication/v1");
        }

        context.Items[AuditMiddleware.ActorItem] = $"partner:{partner.Name}";
        return next(context);
    }

    public static bool IsReplicationRequest(HttpContext context)
    {
        var pattern = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText;
        return pattern is not null && pattern.StartsWith(PartnerLink.PathPrefix, StringComparison.OrdinalIgnoreCase)
            || context.Request.Path.StartsWithSegments(PartnerLink.PathPrefix, StringComparison.OrdinalIgnoreCase);
    }

    private static Task NotOnThisListener(HttpContext context) =>
        Problems.WriteAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, "Not found", "replication requests go to the replication listener, between paired servers only");
}
