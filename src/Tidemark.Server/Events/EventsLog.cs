using Microsoft.Extensions.Logging;

namespace Tidemark.Server.Events;

/// <summary>Log lines of the event log: every event is also a log line. Event ids 3000-3099.</summary>
internal static partial class EventsLog
{
    [LoggerMessage(EventId = 3000, Level = LogLevel.Warning, Message = "Event after the log closed (not stored): {Kind} {Subject}: {Message}")]
    public static partial void EventAfterClose(ILogger logger, string kind, string? subject, string message);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Error, Message = "Could not write event {Sequence} to {Path}")]
    public static partial void EventNotWritten(ILogger logger, Exception exception, long sequence, string path);

    /// <summary>Information for an event whose outcome is ok, a warning otherwise.</summary>
    [LoggerMessage(EventId = 3002, Message = "Event {Log}:{Sequence} {Kind} {Subject} by {Actor}: {Outcome}: {Message}")]
    public static partial void Event(ILogger logger, LogLevel level, string log, long sequence, string kind, string subject, string actor, string outcome, string message);
}
