using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Tidemark.Api;

namespace Tidemark.Server.Api;

/// <summary>
/// Every request needs "Authorization: Bearer TOKEN" with the token of DATA/token, including from
/// localhost: anyone who can reach the port could otherwise delete volumes. Compared in constant time.
/// </summary>
public sealed class TokenAuthentication
{
    private readonly byte[] _token;

    public TokenAuthentication(string token)
    {
        _token = Encoding.UTF8.GetBytes(token);
        Actor = Fingerprint(token);
    }

    /// <summary>Who a request with this token is in the audit log: "token:" and the first 12 hex digits of its SHA-256.</summary>
    public string Actor { get; }

    public static string Fingerprint(string token) =>
        "token:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)))[..12];

    public Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        var header = context.Request.Headers.Authorization.ToString();
        const string scheme = "Bearer ";
        if (header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)
            && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[scheme.Length..].Trim()), _token))
        {
            context.Items[Events.AuditMiddleware.ActorItem] = Actor;
            return next(context);
        }

        context.Response.Headers.WWWAuthenticate = "Bearer realm=\"tidemark\"";
        var detail = header.Length == 0
            ? "send the API token as 'Authorization: Bearer TOKEN'; the token is in the server's data directory (DATA/token)"
            : "the token is not this server's; use the one in the server's data directory (DATA/token)";
        return Problems.WriteAsync(context, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "Unauthorized", detail);
    }
}
