using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;
using Tidemark.Api;

namespace Tidemark.Server.Api;

/// <summary>
/// Size limits that answer with problem documents. Kestrel's own refusals (a request line past its
/// limit) are bare, so its line limit is set above <see cref="MaxTargetChars"/> and the check is made
/// here. JSON bodies on the API listener are capped at <see cref="MaxJsonBodyBytes"/>; the endpoints
/// that take streams lift the cap for themselves. A request that matched no endpoint only because of its Content-Type is a
/// 415, one that matched only another method a 405, not a 404.
/// </summary>
public static class RequestLimits
{
    /// <summary>Path and query: names are at most 64 characters, so a few hundred would do; 8 KiB leaves room for queries.</summary>
    public const int MaxTargetChars = 8 * 1024;

    /// <summary>What Kestrel lets through to here (its own 414 has no problem document).</summary>
    public const int KestrelRequestLineBytes = 64 * 1024;

    /// <summary>The largest JSON request (a group of many volumes, a policy) is a few KiB.</summary>
    public const long MaxJsonBodyBytes = 1 << 20;

    /// <summary>Free text kept with an object (a hold's reason).</summary>
    public const int MaxReasonChars = 256;

    public static Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        var target = context.Request.Path.Value?.Length + context.Request.QueryString.Value?.Length ?? 0;
        if (target > MaxTargetChars)
        {
            return Problems.WriteAsync(context, StatusCodes.Status414UriTooLong, "uri-too-long", "URI too long", $"the request's path and query have {target} characters; the API takes at most {MaxTargetChars}");
        }

        // The replication listener carries hash lists and streams between paired servers, under Kestrel's own limit.
        var replication = context.Features.Get<IConnectionItemsFeature>()?.Items.ContainsKey(Replication.ReplicationGate.ConnectionMark) == true;
        if (!replication && context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } body)
        {
            body.MaxRequestBodySize = MaxJsonBodyBytes;
        }

        return next(context);
    }

    /// <summary>Throws a 400 problem when a free-text field is longer than <paramref name="max"/>.</summary>
    public static void ThrowIfTooLong(string? text, string field, int max = MaxReasonChars)
    {
        if (text is not null && text.Length > max)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{field} has {text.Length} characters; at most {max} are kept");
        }
    }

    /// <summary>The answer for a request no endpoint took: 415 or 405 when the path exists, else 404.</summary>
    public static Task NoEndpointAsync(HttpContext context)
    {
        var request = context.Request;
        var methods = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var endpoint in context.RequestServices.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>())
        {
            if (endpoint.RoutePattern.RawText is not { } raw || raw.Contains("{*", StringComparison.Ordinal)
                || !new TemplateMatcher(TemplateParser.Parse(raw), []).TryMatch(request.Path, []))
            {
                continue;
            }

            methods.UnionWith(endpoint.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? []);
        }

        if (methods.Contains(request.Method))
        {
            return Problems.WriteAsync(context, StatusCodes.Status415UnsupportedMediaType, "unsupported-media-type", "Unsupported media type", $"{request.Method} {request.Path} takes a JSON body: send it with 'Content-Type: application/json', not '{request.ContentType ?? "(none)"}'");
        }

        if (methods.Count > 0)
        {
            context.Response.Headers.Allow = string.Join(", ", methods.Order(StringComparer.Ordinal));
            return Problems.WriteAsync(context, StatusCodes.Status405MethodNotAllowed, "method-not-allowed", "Method not allowed", $"{request.Path} takes {string.Join(", ", methods.Order(StringComparer.Ordinal))}, not {request.Method}");
        }

        return Problems.WriteAsync(context, StatusCodes.Status404NotFound, ErrorCodes.NotFound, "Not found", $"{request.Method} {request.Path} is not a Tidemark API resource; /openapi/v1.json lists them");
    }
}
