using System.Net;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server;

/// <summary>The server's own log lines (start, stop, exports, sessions), source-generated: no boxing or template parsing per call. Event ids 1000-1299.</summary>
internal static partial class ServerLog
{
    [LoggerMessage(EventId = 1000, Level = LogLevel.Warning, Message = "{Count} paths of the data directory were readable by other users; made them the owner's only: {Paths}")]
    public static partial void DataDirectoryRestricted(ILogger logger, int count, string paths);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Warning, Message = "The API listens on {Http} without TLS: the token crosses the network in clear; set tls-cert (a PEM file, or self-signed)")]
    public static partial void ApiWithoutTls(ILogger logger, Uri? http);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Information, Message = "Tidemark serving pool {Pool} from {Data}: API {Http} (token in {Token}), NBD {Nbd}, iSCSI {Iscsi}")]
    public static partial void Serving(ILogger logger, Guid pool, string data, Uri? http, string token, string nbd, string iscsi);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Information, Message = "Tidemark stopped; the pool is flushed and closed")]
    public static partial void Stopped(ILogger logger);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Error, Message = "{Work} stopped after an unexpected error; restart the server to resume it")]
    public static partial void PeriodicWorkStopped(ILogger logger, Exception exception, string work);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Warning, Message = "{Work} failed; trying again in {Interval}")]
    public static partial void PeriodicWorkFailed(ILogger logger, Exception exception, string work, TimeSpan interval);

    [LoggerMessage(EventId = 1100, Level = LogLevel.Warning, Message = "{Message}")]
    public static partial void ExportNotice(ILogger logger, string message);

    [LoggerMessage(EventId = 1101, Level = LogLevel.Warning, Message = "export {Export} of {Target} is offline: {Problem}")]
    public static partial void ExportOffline(ILogger logger, string export, string target, string problem);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Warning, Message = "could not record the read-only exports in the pool: {Problem}")]
    public static partial void ReadOnlyExportsNotRecorded(ILogger logger, string problem);

    [LoggerMessage(EventId = 1103, Level = LogLevel.Information, Message = "exported {Target} over {Protocol} as {Export}{Mode}")]
    public static partial void Exported(ILogger logger, string target, string protocol, string export, string mode);

    [LoggerMessage(EventId = 1104, Level = LogLevel.Information, Message = "removed export {Export} of {Target}")]
    public static partial void ExportRemoved(ILogger logger, string export, string target);

    [LoggerMessage(EventId = 1105, Level = LogLevel.Information, Message = "export {Export} of {Target} now serves {Image} to new clients")]
    public static partial void ExportServes(ILogger logger, string export, string target, string image);

    [LoggerMessage(EventId = 1200, Level = LogLevel.Debug, Message = "iSCSI connection from {Remote} ({Initiator}) to {Target} ended: {Reason}")]
    public static partial void IscsiConnectionEnded(ILogger logger, EndPoint? remote, string? initiator, string? target, string reason);

    [LoggerMessage(EventId = 1201, Level = LogLevel.Debug, Message = "NBD session from {Remote} on {Export} ended: {Reason} {Message}")]
    public static partial void NbdSessionEnded(ILogger logger, EndPoint? remote, string? export, object reason, string? message);
}
