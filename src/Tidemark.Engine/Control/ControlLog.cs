using Microsoft.Extensions.Logging;

namespace Tidemark.Engine.Control;

/// <summary>Log lines of the control-plane store. Event ids 7000-7099.</summary>
internal static partial class ControlLog
{
    [LoggerMessage(EventId = 7000, Level = LogLevel.Information, Message = "moved {Count} {Kind} records from {Path} into the pool's metadata; the old file is now {Migrated}")]
    public static partial void LegacyFileMigrated(ILogger logger, int count, string kind, string path, string migrated);
}
