using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Server.Events;
using Tidemark.Server.WebConsole;

namespace Tidemark.Server.Api;

/// <summary>
/// Every request needs "Authorization: Bearer TOKEN" with one of the named tokens (<see cref="TokenStore"/>),
/// including from localhost: anyone who can reach the port could otherwise delete volumes. The token's
/// role must allow the endpoint (<see cref="ApiRoles"/>). Refused logins wait longer the more a source
/// fails (<see cref="LoginThrottle"/>) and are summarized in rate-limited "auth.failed" events and
/// warnings, so guessing is slow and cannot push real history out of the audit log.
/// Without the header, a web console session cookie (<see cref="ConsoleSessions"/>) stands for its
/// token; a change made with a cookie must also carry the session's CSRF token, since a browser
/// attaches cookies by itself. The console's own pages and sign-in are the only anonymous endpoints.
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

    /// <summary>The console's sessions; null: bearer tokens only.</summary>
    public ConsoleSessions? Sessions { get; init; }

    public Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (context.GetEndpoint()?.Metadata.GetMetadata<ConsoleEndpoints.Anonymous>() is not null)
        {
            return next(context);
        }

        var header = context.Request.Headers.Authorization.ToString();
        const string scheme = "Bearer ";
        TokenDto? token;
        if (header.Length == 0 && Sessions is not null && context.Request.Cookies.TryGetValue(ConsoleSessions.CookieName, out var sessionId))
        {
            // A request the console makes by itself (a live reload) is not use: an open tab must not keep a walked-away session alive.
            var found = Sessions.Find(sessionId, touch: !context.Request.Headers.ContainsKey(ConsoleSessions.BackgroundHeader));
            if (found is not { } session)
            {
                return RefuseAsync(context, noHeader: true, sessionEnded: true);
            }

            token = session.Token;
            var method = context.Request.Method;
            if (!(HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method))
                && !ConsoleSessions.CsrfMatches(session.Session, context.Request.Headers[ConsoleSessions.CsrfHeader].ToString()))
            {
                // Audited under the session's name: a change with a valid cookie but no CSRF token is another site trying.
                context.Items[AuditMiddleware.ActorItem] = token.Name;
                return Problems.WriteAsync(
                    context,
                    StatusCodes.Status403Forbidden,
                    ConsoleEndpoints.CsrfCode,
                    "Forbidden",
                    $"a change made with a console session cookie needs the session's {ConsoleSessions.CsrfHeader} header (the console sends it; reload the console); scripts use 'Authorization: Bearer TOKEN'");
            }
        }
        else
        {
            token = header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase) ? _tokens.Find(header[scheme.Length..].Trim()) : null;
        }

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

    /// <summary>A sign-in with a secret that is no token's: throttled and summarized like a refused API request.</summary>
    public Task RefuseSignInAsync(HttpContext context) => RefuseAsync(context, noHeader: false);

    /// <summary>A successful console sign-in clears its source's failures, as a good API request does.</summary>
    public void SignedIn(HttpContext context) => _throttle.Succeeded(Source(context));

    private async Task RefuseAsync(HttpContext context, bool noHeader, bool sessionEnded = false)
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
        var detail = sessionEnded
            ? "the console session has ended (signed out, idle for over an hour, older than 12 hours, its token revoked, or the server restarted); sign in again"
            : noHeader
            ? "send an API token as 'Authorization: Bearer TOKEN'; the first (admin) token is in the server's data directory (DATA/token)"
            : "this token is not one of this server's (revoked, or mistyped); use DATA/token or one from 'tidemark token create'";
        await Problems.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "Unauthorized", detail);
    }

    private static string Source(HttpContext context) => context.Connection.RemoteIpAddress?.ToString() ?? "unknown";

    [LoggerMessage(EventId = 5010, Level = LogLevel.Warning, Message = "Refused {Count} API request(s) without a valid token from {Source} ({Failures} in a row; the latest: {Request})")]
    private static partial void LogRefused(ILogger logger, long count, string source, int failures, string request);
}
