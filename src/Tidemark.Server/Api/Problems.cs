using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Tidemark.Api;

namespace Tidemark.Server.Api;

/// <summary>
/// Turns failures into RFC 7807 problem details with a stable <c>code</c>: storage errors keep their
/// name (kebab-case) and their message, which already says what to do; anything unexpected is a 500
/// that points at the server log without leaking internals.
/// </summary>
public static class Problems
{
    public const string ContentType = "application/problem+json";

    public static int StatusFor(StorageError error) => error switch
    {
        StorageError.NotFound => StatusCodes.Status404NotFound,
        StorageError.AlreadyExists => StatusCodes.Status409Conflict,
        StorageError.InvalidName or StorageError.InvalidArgument or StorageError.Misaligned or StorageError.OutOfRange => StatusCodes.Status400BadRequest,
        StorageError.Held or StorageError.HasDependents or StorageError.Busy => StatusCodes.Status409Conflict,
        StorageError.ReadOnly => StatusCodes.Status409Conflict,
        StorageError.NoSpace => StatusCodes.Status507InsufficientStorage,
        StorageError.Unsupported => StatusCodes.Status400BadRequest,
        StorageError.Closed => StatusCodes.Status503ServiceUnavailable,
        StorageError.Unavailable => StatusCodes.Status502BadGateway,
        _ => StatusCodes.Status500InternalServerError,
    };

    public static Task WriteAsync(HttpContext context, int status, string code, string title, string detail)
    {
        context.Response.StatusCode = status;
        // Details quote what the client sent (a name, a path): a 20 MiB name must not come back whole.
        detail = Events.Bounded.Message(detail);
        context.Items[Events.AuditMiddleware.ProblemItem] = $"{code}: {detail}";
        var problem = new ProblemDto($"urn:tidemark:problem:{code}", title, status, detail, code);
        return context.Response.WriteAsJsonAsync(problem, ApiJson.Options, ContentType);
    }

    private static Task WriteBareAsync(HttpContext context)
    {
        var status = context.Response.StatusCode;
        var title = Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status);
        var (code, detail) = status switch
        {
            StatusCodes.Status413PayloadTooLarge => ("payload-too-large", $"the request body is too large: JSON requests take at most {RequestLimits.MaxJsonBodyBytes / 1024} KiB"),
            StatusCodes.Status415UnsupportedMediaType => ("unsupported-media-type", "send the body as JSON with 'Content-Type: application/json'"),
            _ => (title.ToLowerInvariant().Replace(' ', '-'), $"the server refused the request ({status} {title}); /openapi/v1.json describes the API"),
        };
        return WriteAsync(context, status, code, title, detail);
    }

    /// <summary>The outermost middleware: every exception a handler throws ends here.</summary>
    public static async Task HandleAsync(HttpContext context, RequestDelegate next)
    {
        try
        {
            await next(context);
            if (!context.Response.HasStarted && context.Response.StatusCode >= 400 && context.Response.ContentType is null)
            {
                // Refusals made below us without a body (the framework's 413 for a body over the limit,
                // for one) still get a problem document.
                await WriteBareAsync(context);
            }
        }
        catch (StorageException ex) when (!context.Response.HasStarted)
        {
            var status = StatusFor(ex.Error);
            await WriteAsync(context, status, ErrorCodes.For(ex.Error), ex.Error.ToString(), ex.Message);
        }
        catch (Jobs.JobCancelledException ex) when (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested)
        {
            // Cancelled by another request ('tidemark job cancel') while this one waited inline. A
            // request its own client aborted has nobody to answer and stays silent (below).
            await WriteAsync(context, StatusCodes.Status409Conflict, ErrorCodes.Cancelled, "Cancelled", ex.Message);
        }
        catch (BadHttpRequestException ex) when (!context.Response.HasStarted)
        {
            // Malformed JSON, a missing required field, a query value of the wrong type.
            var detail = ex.InnerException is { } inner ? $"{ex.Message}: {inner.Message}" : ex.Message;
            await WriteAsync(context, ex.StatusCode, ErrorCodes.BadRequest, "Bad request", detail + "; see /openapi/v1.json for the request format");
        }
        catch (Exception ex) when (!context.Response.HasStarted && ex is not OperationCanceledException)
        {
            var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Api");
            ApiLog.RequestFailed(logger, ex, context.Request.Method, Events.Bounded.Message(context.Request.Path.ToString(), 512), context.TraceIdentifier);
            // No exception type or message: they describe the server's insides, not what the client can change.
            await WriteAsync(context, StatusCodes.Status500InternalServerError, ErrorCodes.Internal, "Internal error", $"the server failed on this request; its log has the details under request {context.TraceIdentifier}");
        }
    }
}
