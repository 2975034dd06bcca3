using Microsoft.Extensions.Logging;

namespace Tidemark.Server.Agents;

/// <summary>Log lines of the server's side of agents: consistent snapshots, verifications, mail recovery, mail index builds. Event ids 2000-2099.</summary>
internal static partial class AgentsLog
{
    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "Snapshot {Snapshot}: {Consistency}")]
    public static partial void SnapshotConsistency(ILogger logger, string snapshot, string consistency);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "Agent {Host} did not confirm its resume ({Message}); it resumes by itself at {Deadline:O}")]
    public static partial void ResumeNotConfirmed(ILogger logger, string host, string message, DateTimeOffset deadline);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Information, Message = "Host {Host} did not check {Snapshot} ({Reason}); trying the policy's next host")]
    public static partial void HostDidNotCheck(ILogger logger, string host, string snapshot, string? reason);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Warning, Message = "The verification view {View} was not deleted ({Message}); delete it with 'tidemark view delete {View}'")]
    public static partial void VerificationViewNotDeleted(ILogger logger, string view, string message);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Information, Message = "Snapshot {Snapshot} verified on {Host}: {Summary}")]
    public static partial void SnapshotVerified(ILogger logger, string snapshot, string host, string summary);

    [LoggerMessage(EventId = 2013, Level = LogLevel.Warning, Message = "Deleted verification view {View} (of {Origin}) left by a server stopped during a verification")]
    public static partial void LeftoverViewDeleted(ILogger logger, string view, string? origin);

    [LoggerMessage(EventId = 2014, Level = LogLevel.Warning, Message = "The leftover verification view {View} was not deleted ({Message}); delete it with 'tidemark view delete {View}'")]
    public static partial void LeftoverViewNotDeleted(ILogger logger, string view, string message);

    [LoggerMessage(EventId = 2015, Level = LogLevel.Warning, Message = "The verification export {View} was not deleted ({Message})")]
    public static partial void VerificationExportNotDeleted(ILogger logger, string view, string message);

    [LoggerMessage(EventId = 2020, Level = LogLevel.Warning, Message = "The recovery view {View} was not deleted ({Message}); delete it with 'tidemark view delete {View}'")]
    public static partial void RecoveryViewNotDeleted(ILogger logger, string view, string message);

    [LoggerMessage(EventId = 2021, Level = LogLevel.Warning, Message = "Cancelling recovery {Job} on host {Host} failed: {Message}")]
    public static partial void RecoveryCancelFailed(ILogger logger, string job, string host, string message);

    [LoggerMessage(EventId = 2022, Level = LogLevel.Warning, Message = "Deleted view {View} (of {Origin}) left by a recovery interrupted at the last stop ({Purpose})")]
    public static partial void LeftoverRecoveryViewDeleted(ILogger logger, string view, string origin, string purpose);

    [LoggerMessage(EventId = 2023, Level = LogLevel.Warning, Message = "The view {View} left by a recovery interrupted at the last stop was not deleted ({Message}); delete it with 'tidemark view delete {View}'")]
    public static partial void LeftoverRecoveryViewNotDeleted(ILogger logger, string view, string message);

    [LoggerMessage(EventId = 2030, Level = LogLevel.Information, Message = "Mail index of {Snapshot} on host {Host} skipped: {Reason}")]
    public static partial void MailIndexSkipped(ILogger logger, string snapshot, string host, string reason);

    [LoggerMessage(EventId = 2031, Level = LogLevel.Debug, Message = "Host {Host} holds no mail store on {Volume}: nothing to index")]
    public static partial void NoMailStore(ILogger logger, string host, string volume);

    [LoggerMessage(EventId = 2032, Level = LogLevel.Warning, Message = "The index view {View} was not deleted ({Message}); delete it with 'tidemark view delete {View}'")]
    public static partial void IndexViewNotDeleted(ILogger logger, string view, string message);

    [LoggerMessage(EventId = 2033, Level = LogLevel.Information, Message = "Mail index of {Snapshot} built on host {Host} in {Seconds:F1} s: {Stores}")]
    public static partial void MailIndexBuilt(ILogger logger, string snapshot, string host, double seconds, string stores);

    [LoggerMessage(EventId = 2034, Level = LogLevel.Warning, Message = "Mail index of {Snapshot} on host {Host} failed: {Reason}")]
    public static partial void MailIndexFailed(ILogger logger, string snapshot, string host, string reason);

    [LoggerMessage(EventId = 2035, Level = LogLevel.Warning, Message = "Cancelling index build {Job} on host {Host} failed: {Message}")]
    public static partial void IndexCancelFailed(ILogger logger, string job, string host, string message);

    [LoggerMessage(EventId = 2036, Level = LogLevel.Warning, Message = "The leftover index view {View} was not deleted ({Message}); delete it with 'tidemark view delete {View}'")]
    public static partial void LeftoverIndexViewNotDeleted(ILogger logger, string view, string message);

    [LoggerMessage(EventId = 2037, Level = LogLevel.Warning, Message = "Mail recovery {Job}, after its answer: {Problem}")]
    public static partial void RecoveryCleanupProblem(ILogger logger, string job, string problem);

    [LoggerMessage(EventId = 2038, Level = LogLevel.Information, Message = "Mail recovery {Job} cleaned up after its answer in {Seconds:F2} s")]
    public static partial void RecoveryCleanedUp(ILogger logger, string job, double seconds);
}
