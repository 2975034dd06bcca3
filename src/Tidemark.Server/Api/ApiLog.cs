using Microsoft.Extensions.Logging;

namespace Tidemark.Server.Api;

/// <summary>Log lines of the REST API. Event ids 5000-5099.</summary>
internal static partial class ApiLog
{
    [LoggerMessage(EventId = 5000, Level = LogLevel.Error, Message = "{Method} {Path} failed (request {RequestId})")]
    public static partial void RequestFailed(ILogger logger, Exception exception, string method, string path, string requestId);
}
