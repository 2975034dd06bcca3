using Microsoft.Extensions.Logging;

namespace Tidemark.Replication;

/// <summary>Log lines of the replication module. Event ids 6000-6099.</summary>
internal static partial class ReplicationLog
{
    [LoggerMessage(EventId = 6000, Level = LogLevel.Warning, Message = "Replication of {Volume} to {Partner}, attempt {Attempt}: {Message}")]
    public static partial void AttemptFailed(ILogger logger, string volume, string partner, int attempt, string message);

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Kept {Snapshot}: {Message}")]
    public static partial void SnapshotKept(ILogger logger, string snapshot, string message);
}
