using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;
using Tidemark.Api;

namespace Tidemark.Agent;

/// <summary>
/// At the agent's start, before it listens: undoes what a previous run quiesced and never resumed
/// (it was killed with -9, or the host lost power; ADR 0015). A Postfix queue manager it stopped
/// is continued (<see cref="PostfixHold.ContinueLeftover"/>; a hold of an earlier version's,
/// defer_transports, is put back by <see cref="PostfixHold.RestoreAsync"/>), file systems still frozen by that run are thawed (only
/// in the same boot, and only the same mount), owed POST hooks run. A PostgreSQL backup mode needs
/// nothing: it lives as long as the agent's connection, which ended with the process. An entry that
/// cannot be settled (Postfix missing, its config gone) is kept for the next start and reported; it
/// never stops the agent from starting. Every outcome is logged and kept for the server, which
/// records it as an `agent.recovery` event the next time it asks for a quiesce.
/// </summary>
[SupportedOSPlatform("linux")]
public static class JournalRecovery
{
    public static async Task<IReadOnlyList<AgentRecoveryDto>> RunAsync(QuiesceJournal journal, AgentConfig config, ScriptPlugin scripts, ILogger logger, string mountInfoPath = "/proc/self/mountinfo", CancellationToken ct = default)
    {
        var report = new List<AgentRecoveryDto>();
        foreach (var (path, entry, error) in journal.List())
        {
            bool settled;
            string message;
            try
            {
                (settled, message) = entry switch
                {
                    null => (false, $"journal entry {path} cannot be read ({error}); check by hand what that quiesce changed (a stopped Postfix qmgr: 'kill -CONT PID'; defer_transports in Postfix's main.cf; a frozen mount: 'fsfreeze -u PATH'), then remove the file"),
                    { Kind: QuiesceJournalEntry.QueueManager } => PostfixHold.ContinueLeftover(entry),
                    { Kind: QuiesceJournalEntry.Postfix } => await PostfixHold.RestoreAsync(entry, config.Mail.Any(m => m.Postfix is { } p && Same(p, entry.PostfixConfig)), ct),
                    { Kind: QuiesceJournalEntry.Freeze } => Thaw(entry, mountInfoPath),
                    { Kind: QuiesceJournalEntry.ScriptKind } => await OwedPostAsync(entry, config, scripts),
                    _ => (false, $"journal entry {path} is of kind '{entry.Kind}', which this version of the agent does not know; undo it by hand, then remove the file"),
                };
            }
            catch (Exception ex) when (ex is StorageException or IOException or UnauthorizedAccessException)
            {
                (settled, message) = (false, $"undoing journal entry {path} failed ({ex.Message}); it is tried again at the next start");
            }

            if (settled)
            {
                journal.Remove(path);
                AgentLog.JournalRecovered(logger, message);
            }
            else
            {
                AgentLog.JournalNotRecovered(logger, message, path);
            }

            report.Add(new AgentRecoveryDto(entry?.Kind ?? "unknown", message, settled));
        }

        return report;
    }

    private static (bool, string) Thaw(QuiesceJournalEntry entry, string mountInfoPath)
    {
        var path = entry.MountPath ?? "";
        if (entry.BootId != QuiesceJournal.BootId())
        {
            return (true, $"{path}: frozen by a previous run of the agent before the host restarted; a restart thaws it");
        }

        var now = LocalMounts.MountId(path, mountInfoPath);
        if (now is null || now != entry.MountId)
        {
            return (true, $"{path}: a previous run of the agent froze {entry.MountId ?? "a file system"} there, but {(now is null ? "nothing is mounted there now" : $"{now} is mounted there now")}; nothing thawed");
        }

        return FileSystemFreeze.ThawLeftover(path)
            ? (true, $"{path}: thawed; a previous run of the agent (pid {entry.AgentPid}) stopped while it was frozen")
            : (true, $"{path}: a previous run of the agent stopped during a freeze, but it is not frozen any more");
    }

    private static async Task<(bool, string)> OwedPostAsync(QuiesceJournalEntry entry, AgentConfig config, ScriptPlugin scripts)
    {
        if (config.Scripts.FirstOrDefault(s => s.Name == entry.Script) is not { Post: not null } script)
        {
            return (true, $"script {entry.Script}: a previous run of the agent stopped between its pre and post hooks, but the agent's config has no post hook of that name any more; nothing run");
        }

        var (ok, line) = await scripts.RunOwedPostAsync(script, entry.Volumes ?? []);
        return (true, $"a previous run of the agent stopped between pre and post hooks; ran the post hook now: {line}{(ok ? "" : " (failed; not repeated)")}");
    }

    private static bool Same(string a, string? b) =>
        b is not null && LocalMounts.Normalize(Path.GetFullPath(a)) == LocalMounts.Normalize(Path.GetFullPath(b));
}
