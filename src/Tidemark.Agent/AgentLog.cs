using System.Net;
using Microsoft.Extensions.Logging;

namespace Tidemark.Agent;

/// <summary>Log lines of the agent (a process of its own on an application host), source-generated: no boxing or template parsing per call. Event ids 9000-9099.</summary>
internal static partial class AgentLog
{
    [LoggerMessage(EventId = 9000, Level = LogLevel.Information, Message = "Tidemark agent {Name} listening on {Endpoint} (fingerprint {Fingerprint}); resumes by itself {Deadline}s after a quiesce")]
    public static partial void Listening(ILogger logger, string name, IPEndPoint? endpoint, string fingerprint, double deadline);

    [LoggerMessage(EventId = 9001, Level = LogLevel.Warning, Message = "Refused a caller with certificate {Fingerprint}: not a paired server")]
    public static partial void CallerRefused(ILogger logger, string fingerprint);

    [LoggerMessage(EventId = 9010, Level = LogLevel.Information, Message = "Quiesced {Items} (session {Session}); resumes by itself at {Deadline:O}")]
    public static partial void Quiesced(ILogger logger, string items, string session, DateTimeOffset deadline);

    [LoggerMessage(EventId = 9011, Level = LogLevel.Warning, Message = "The server did not resume session {Session} within its deadline ({Deadline:O}): resumed {Items} by itself")]
    public static partial void ResumedAtDeadline(ILogger logger, string session, DateTimeOffset deadline, string items);

    [LoggerMessage(EventId = 9012, Level = LogLevel.Error, Message = "Resuming session {Session} at its deadline failed; check the mounts ('fsfreeze -u PATH')")]
    public static partial void ResumeAtDeadlineFailed(ILogger logger, Exception exception, string session);

    [LoggerMessage(EventId = 9013, Level = LogLevel.Warning, Message = "Stopping with session {Session} open: resuming {Items} now")]
    public static partial void ResumingOnStop(ILogger logger, string session, string items);

    [LoggerMessage(EventId = 9020, Level = LogLevel.Warning, Message = "{Path} was no longer frozen when the agent thawed it (thawed by someone else)")]
    public static partial void AlreadyThawed(ILogger logger, string path);

    [LoggerMessage(EventId = 9021, Level = LogLevel.Warning, Message = "pg_backup_stop on cluster {Cluster} failed ({Message}); closing its session ends backup mode")]
    public static partial void BackupStopFailed(ILogger logger, string cluster, string message);

    [LoggerMessage(EventId = 9022, Level = LogLevel.Warning, Message = "PostgreSQL cluster {Cluster} does not answer ({Message}); verifying with its configured data directory")]
    public static partial void ClusterNotAnswering(ILogger logger, string cluster, string message);

    [LoggerMessage(EventId = 9023, Level = LogLevel.Information, Message = "Postfix ({Config}): delivery held, queue manager {Managers} stopped, every {Agents} process between deliveries ({Waited} waited for)")]
    public static partial void PostfixHeld(ILogger logger, string config, string managers, string agents, int waited);

    [LoggerMessage(EventId = 9025, Level = LogLevel.Warning, Message = "{Line}")]
    public static partial void ScriptOutput(ILogger logger, string line);

    [LoggerMessage(EventId = 9026, Level = LogLevel.Debug, Message = "Mail {Phase} ({Where}): {Step} {Milliseconds:0.0} ms")]
    public static partial void MailStep(ILogger logger, string phase, string where, string step, double milliseconds);

    [LoggerMessage(EventId = 9028, Level = LogLevel.Debug, Message = "Mail {Phase} ({Where}): {Command} (pid {Pid}) finished its delivery {Milliseconds:0.0} ms into the step")]
    public static partial void MailDeliveryFinished(ILogger logger, string phase, string where, string command, int pid, double milliseconds);

    [LoggerMessage(EventId = 9029, Level = LogLevel.Warning, Message = "Mail store {Store}: doveadm index before the hold did not finish within {Seconds} s; holding without it (the index run inside the hold covers the rest)")]
    public static partial void IndexBeforeHoldCut(ILogger logger, string store, double seconds);

    [LoggerMessage(EventId = 9033, Level = LogLevel.Warning, Message = "Postfix ({Config}): the queue manager stopped for the hold (pid {Pids}) had gone at the release; the master runs a new one")]
    public static partial void PostfixManagerGone(ILogger logger, string config, string pids);

    [LoggerMessage(EventId = 9030, Level = LogLevel.Warning, Message = "Recovered from a previous run: {Message}")]
    public static partial void JournalRecovered(ILogger logger, string message);

    [LoggerMessage(EventId = 9031, Level = LogLevel.Error, Message = "Not recovered from a previous run: {Message} (kept: {Path})")]
    public static partial void JournalNotRecovered(ILogger logger, string message, string path);

    [LoggerMessage(EventId = 9032, Level = LogLevel.Warning, Message = "Could not remove the journal entry {Path} ({Message}); the next start checks it again")]
    public static partial void JournalEntryNotRemoved(ILogger logger, string path, string message);

    [LoggerMessage(EventId = 9040, Level = LogLevel.Warning, Message = "Verification of {Snapshot}: teardown left {Problems}")]
    public static partial void VerificationTeardownLeft(ILogger logger, string snapshot, string problems);

    [LoggerMessage(EventId = 9041, Level = LogLevel.Warning, Message = "Verification work directory {Directory} not removed (something is still mounted under it, or it would not delete)")]
    public static partial void VerificationDirectoryKept(ILogger logger, string directory);

    [LoggerMessage(EventId = 9042, Level = LogLevel.Information, Message = "Verified {Snapshot}: {Verdict} {Reason}")]
    public static partial void Verified(ILogger logger, string snapshot, string verdict, string? reason);

    [LoggerMessage(EventId = 9050, Level = LogLevel.Information, Message = "Mail recovery {Id} from {Snapshot} starts")]
    public static partial void RecoveryStarts(ILogger logger, string id, string snapshot);

    [LoggerMessage(EventId = 9051, Level = LogLevel.Information, Message = "Mail recovery {Id} from {Snapshot}: {Matches} matched, {Outcomes} delivered")]
    public static partial void RecoveryDone(ILogger logger, string id, string snapshot, int matches, int outcomes);

    [LoggerMessage(EventId = 9052, Level = LogLevel.Warning, Message = "Mail recovery {Id} from {Snapshot} failed: {Message}")]
    public static partial void RecoveryFailed(ILogger logger, string id, string snapshot, string message);

    [LoggerMessage(EventId = 9053, Level = LogLevel.Information, Message = "Mail recovery {Id}: {Line}")]
    public static partial void RecoveryStep(ILogger logger, string id, string? line);

    [LoggerMessage(EventId = 9054, Level = LogLevel.Information, Message = "Mail index {Id} of {Snapshot} starts")]
    public static partial void IndexStarts(ILogger logger, string id, string snapshot);

    [LoggerMessage(EventId = 9055, Level = LogLevel.Information, Message = "Mail index {Id} of {Snapshot}: {Stores}")]
    public static partial void IndexDone(ILogger logger, string id, string snapshot, string stores);

    [LoggerMessage(EventId = 9056, Level = LogLevel.Warning, Message = "Mail index {Id} of {Snapshot} failed: {Message}")]
    public static partial void IndexFailed(ILogger logger, string id, string snapshot, string message);

    [LoggerMessage(EventId = 9057, Level = LogLevel.Information, Message = "Mail recovery {Id} from {Snapshot}: {Matches} matched, {Outcomes} delivered; taking its mounts down after the answer")]
    public static partial void RecoveryAnsweredBeforeTeardown(ILogger logger, string id, string snapshot, int matches, int outcomes);

    [LoggerMessage(EventId = 9058, Level = LogLevel.Information, Message = "Mail recovery {Id} from {Snapshot}: mounts taken down")]
    public static partial void RecoveryTornDown(ILogger logger, string id, string snapshot);

    [LoggerMessage(EventId = 9059, Level = LogLevel.Warning, Message = "Mail recovery {Id} from {Snapshot}: teardown failed: {Message}")]
    public static partial void RecoveryTeardownFailed(ILogger logger, string id, string snapshot, string message);

    [LoggerMessage(EventId = 9060, Level = LogLevel.Information, Message = "Job {Id}: the server asked to cancel it; stopping it and taking its mounts down")]
    public static partial void JobCancelRequested(ILogger logger, string id);
}
