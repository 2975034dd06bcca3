using System.Net;

namespace Tidemark.Api;

/// <summary>The server refused a request; <see cref="Code"/> is the problem's stable code, <see cref="Message"/> its detail.</summary>
public sealed class TidemarkApiException : Exception
{
    public TidemarkApiException(HttpStatusCode status, string code, string message)
        : base(message)
    {
        Status = status;
        Code = code;
    }

    public TidemarkApiException()
        : this(HttpStatusCode.InternalServerError, ErrorCodes.Internal, "the server failed")
    {
    }

    public TidemarkApiException(string message)
        : this(HttpStatusCode.InternalServerError, ErrorCodes.Internal, message)
    {
    }

    public TidemarkApiException(string message, Exception innerException)
        : base(message, innerException)
    {
        Status = HttpStatusCode.InternalServerError;
        Code = ErrorCodes.Internal;
    }

    public HttpStatusCode Status { get; }

    public string Code { get; }
}
