using System.Net;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server;

/// <summary>Log lines of the block-protocol listeners (accept loop, connection threads, stop), source-generated. Event ids 8000-8099.</summary>
internal static partial class TransportLog
{
    [LoggerMessage(EventId = 8000, Level = LogLevel.Information, Message = "{Protocol} listening on {Endpoint}")]
    public static partial void Listening(ILogger logger, string protocol, IPEndPoint? endpoint);

    [LoggerMessage(EventId = 8001, Level = LogLevel.Information, Message = "{Protocol} listening on unix:{Path}")]
    public static partial void ListeningUnix(ILogger logger, string protocol, string path);

    [LoggerMessage(EventId = 8002, Level = LogLevel.Warning, Message = "{Count} {Protocol} connections did not end within {Timeout}")]
    public static partial void DrainTimedOut(ILogger logger, int count, string protocol, TimeSpan timeout);

    [LoggerMessage(EventId = 8010, Level = LogLevel.Debug, Message = "{Protocol} accept failed: {Message}")]
    public static partial void AcceptReset(ILogger logger, string protocol, string message);

    [LoggerMessage(EventId = 8011, Level = LogLevel.Error, Message = "{Protocol} cannot accept connections on {Endpoint} ({Failures} failures since the last such line); retrying every {Delay} ms")]
    public static partial void AcceptFailing(ILogger logger, Exception exception, string protocol, EndPoint? endpoint, long failures, double delay);

    [LoggerMessage(EventId = 8012, Level = LogLevel.Information, Message = "{Protocol} accepts connections on {Endpoint} again")]
    public static partial void AcceptRecovered(ILogger logger, string protocol, EndPoint? endpoint);

    [LoggerMessage(EventId = 8013, Level = LogLevel.Error, Message = "{Protocol} could not set up the connection from {Remote}")]
    public static partial void SetupFailed(ILogger logger, Exception exception, string protocol, EndPoint? remote);

    [LoggerMessage(EventId = 8020, Level = LogLevel.Error, Message = "{Protocol}: no thread for the connection from {Remote}; it runs on the thread pool")]
    public static partial void NoThread(ILogger logger, Exception exception, string protocol, EndPoint? remote);

    [LoggerMessage(EventId = 8021, Level = LogLevel.Debug, Message = "{Protocol} connection from {Remote} did not finish its handshake within {Timeout}; closed")]
    public static partial void HandshakeTimedOut(ILogger logger, string protocol, EndPoint? remote, TimeSpan timeout);

    [LoggerMessage(EventId = 8022, Level = LogLevel.Error, Message = "{Protocol} connection from {Remote} failed")]
    public static partial void ConnectionFailed(ILogger logger, Exception exception, string protocol, EndPoint? remote);
}
