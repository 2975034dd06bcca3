using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Server.Events;

namespace Tidemark.Server.Api;

/// <summary>
/// Every request needs "Authorization: Bearer TOKEN" with one of the named tokens (<see cref="TokenStore"/>),
/// including from localhost: anyone who can reach the port could otherwise delete volumes. The token's
/// role must allow the endpoint (<see cref="ApiRoles"/>). Refused logins wait longer the more a source
/// fails (<see cref="LoginThrottle"/>) and are summarized in rate-limited "auth.failed" events and
/// warnings, so guessing is slow and cannot push real history out of the audit log.
/// </summary>
public sealed partial class TokenAuthentication
{
    private readonly TokenStore _tokens;
    private readonly LoginThrottle _throttle;
    private readonly EventLog _events;
    private readonly ILogger _logger;

    public TokenAuthentication(TokenStore tokens, LoginThrottle throttle, EventLog events, ILogger logger)
    {
        _tokens = tokens;
        _throttle = throttle;
        _events = events;
        _logger = logger;
    }

    public Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        var header = context.Request.Headers.Authorization.ToString();
        const string scheme = "Bearer ";
        var token = header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) ? _tokens.Find(header[scheme.Length..].Trim()) : null;
        if (token is null)
        {
            return RefuseAsync(context, header.Length == 0);
        }

        _throttle.Succeeded(Source(context));
        context.Items[AuditMiddleware.ActorItem] = token.Name;
        var needed = ApiRoles.Required(context);
        if (!ApiRoles.Allows(token.Role, needed))
        {
            return Problems.WriteAsync(
                context,
                StatusCodes.Status403Forbidden,
                ErrorCodes.Forbidden,
                "Forbidden",
                $"token {token.Name} has role {token.Role}; {context.Request.Method} {context.Request.Path} needs role {needed}{(needed == TokenRoles.Admin ? "" : " or admin")}; ask an admin ('tidemark token create NAME --role {needed}')");
        }

        return next(context);
    }

    private async Task RefuseAsync(HttpContext context, bool noHeader)
    {
        var source = Source(context);
        var decision = _throttle.Failed(source);
        if (decision.Report > 0)
        {
            var request = Bounded.Message($"{context.Request.Method} {context.Request.Path}", 300);
            LogRefused(_logger, decision.Report, decision.Source, decision.Failures, request);
            // Noise, however many: the refused log, so it can never rotate real history out of the main log.
            _events.RecordRefused(
                "auth.failed",
                null,
                "anonymous",
                $"{decision.Report} request(s) without a valid token from {decision.Source} since the last such event ({decision.Failures} in a row; the latest: {request}); each further one waits {decision.Delay.TotalSeconds:0.#} s",
                "failed",
                source);
        }

        if (decision.Delay > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(decision.Delay, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                return; // the client gave up; nothing to answer
            }
        }

        context.Response.Headers.WWWAuthenticate = "Bearer realm=\"tidemark\"";
        var detail = noHeader
            ? "send an API token as 'Authorization: Bearer TOKEN'; the first (admin) token is in the server's data directory (DATA/token)"
            : "this token is not one of this server's (revoked, or mistyped); use DATA/token or one from 'tidemark token create'";
        await Problems.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "Unauthorized", detail);
    }

    private static string Source(HttpContext context) => context.Connection.RemoteIpAddress?.ToString() ?? "unknown";

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused {Count} API request(s) without a valid token from {Source} ({Failures} in a row; the latest: {Request})")]
    private static partial void LogRefused(ILogger logger, long count, string source, int failures, string request);
}
