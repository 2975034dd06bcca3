using Microsoft.Extensions.Logging;

namespace Tidemark.Server.Policies;

/// <summary>Log lines of the snapshot policies. Event ids 4000-4099.</summary>
internal static partial class PoliciesLog
{
    [LoggerMessage(EventId = 4000, Level = LogLevel.Error, Message = "Policy {Policy} run failed; it runs again at its next due time")]
    public static partial void RunFailed(ILogger logger, Exception exception, string policy);

    [LoggerMessage(EventId = 4001, Level = LogLevel.Warning, Message = "Policy {Policy} failed: {Message}")]
    public static partial void PolicyFailed(ILogger logger, string policy, string message);

    [LoggerMessage(EventId = 4002, Level = LogLevel.Warning, Message = "Stopping while policy runs are still waiting for agents; their hosts resume by themselves at their deadlines")]
    public static partial void StoppingWhileWaitingForAgents(ILogger logger);
}
