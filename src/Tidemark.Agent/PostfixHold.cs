using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;
using Tidemark.Recovery;

namespace Tidemark.Agent;

/// <summary>
/// Stops one Postfix instance's deliveries for the cut (ADR 0015), without a reload. The queue
/// manager (qmgr, the master's child) is the only process that hands mail to the delivery agents:
/// the hold stops it (SIGSTOP), so it hands out nothing more, then waits until no delivery agent of
/// the mail transports is in a delivery (<see cref="PostfixDeliveries"/>: a request not read yet, a
/// queue file open without its final status sent). New mail is still accepted over SMTP and waits in
/// the incoming queue. Release continues the queue manager (SIGCONT): nothing was deferred, so there
/// is nothing to flush. Why not `postsuper -h ALL`: it holds what is queued at that moment, but
/// neither a delivery already handed to an agent nor a message that arrives a moment later. Why not
/// defer_transports and a reload (what this did before): two reloads per snapshot, two generations of
/// processes, and the LMTP connection cache's 1 s retry after each, 2.1 s of held delivery (p50).
/// </summary>
[SupportedOSPlatform("linux")]
public sealed partial class PostfixHold
{
    private const int SigCont = 18;
    private const int SigStop = 19;
    private const int ESrch = 3;
    private static readonly TimeSpan _commandTimeout = TimeSpan.FromSeconds(30);

    /// <summary>A delivery in progress is one message to a local store: seconds, not minutes.</summary>
    private static readonly TimeSpan _drainTimeout = TimeSpan.FromSeconds(30);

    private readonly string _configDirectory;
    private readonly IReadOnlyList<StoppedProcess> _stopped;
    private readonly ILogger _logger;
    private readonly QuiesceJournal? _journal;
    private readonly string? _journalEntry;
    private int _released;

    /// <summary>When the queue manager was sent SIGSTOP: from then until the release's SIGCONT, delivery waits.</summary>
    private long _heldSince;

    private PostfixHold(string configDirectory, IReadOnlyList<StoppedProcess> stopped, ILogger logger, QuiesceJournal? journal, string? journalEntry)
    {
        _configDirectory = configDirectory;
        _stopped = stopped;
        _logger = logger;
        _journal = journal;
        _journalEntry = journalEntry;
    }

    /// <summary>Holds delivery; with a <paramref name="journal"/>, the queue manager to continue is written down durably first (continued at the agent's next start if it dies holding).</summary>
    public static async Task<PostfixHold> HoldAsync(string configDirectory, IReadOnlyList<string>? transports, ILogger logger, CancellationToken ct, QuiesceJournal? journal = null)
    {
        var clock = new StepClock(logger, "hold", configDirectory);
        var (settings, cached) = await PostfixSettings.ReadAsync(configDirectory, transports, ct);
        clock.Lap(cached ? "settings (unchanged)" : "settings (postconf)");
        var master = PostfixMaster.Known(settings.QueueDirectory) ?? await MasterPidAsync(configDirectory, settings.QueueDirectory, ct);
        var managerCommands = new HashSet<string>([settings.QueueManager], StringComparer.Ordinal);
        var managers = ProcStat.Children(master, managerCommands).Where(p => p.State != ProcStat.Zombie).Select(p => new StoppedProcess(p.Pid, p.Command, p.StartTime)).ToList();
        if (managers.Count == 0)
        {
            throw new StorageException(StorageError.Busy, $"postfix ({configDirectory}): its master (pid {master}) runs no {settings.QueueManager} now (starting or stopping?); try again");
        }

        clock.Lap("master and qmgr pids");
        var entry = journal?.Write(configDirectory, QuiesceJournalEntry.Create(QuiesceJournalEntry.QueueManager) with { PostfixConfig = configDirectory, Stopped = managers });
        clock.Lap("journal");
        var hold = new PostfixHold(configDirectory, managers, logger, journal, entry);
        try
        {
            hold._heldSince = Stopwatch.GetTimestamp();
            foreach (var manager in managers)
            {
                if (Kill(manager.Pid, SigStop) != 0)
                {
                    throw new StorageException(StorageError.Busy, $"postfix ({configDirectory}): its {manager.Command} (pid {manager.Pid}) could not be stopped (errno {Marshal.GetLastPInvokeError()}); did it just exit? Try again");
                }
            }

            await WaitStoppedAsync(configDirectory, managers, ct);
            clock.Lap("qmgr stopped");
            var waited = await WaitBetweenDeliveriesAsync(configDirectory, master, settings, managers, clock, ct);
            clock.Lap("deliveries finished");

            // A queue manager the master started meanwhile (a `postfix reload` during the hold) is not stopped: refuse rather than cut under it.
            var now = ProcStat.Children(master, managerCommands).Where(p => p.State != ProcStat.Zombie).Select(p => p.Pid).Order().ToList();
            if (!now.SequenceEqual(managers.Select(m => m.Pid).Order()))
            {
                throw new StorageException(StorageError.Busy, $"postfix ({configDirectory}): its master started another queue manager during the hold (pids {string.Join(", ", now)}; a reload?); try again");
            }

            AgentLog.PostfixHeld(logger, configDirectory, string.Join(", ", managers.Select(m => m.Pid)), string.Join(", ", settings.Commands), waited);
        }
        catch
        {
            await hold.ReleaseAsync();
            throw;
        }

        return hold;
    }

    /// <summary>Continues the queue manager. Safe to call twice (deadline and server race).</summary>
    public Task ReleaseAsync()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0)
        {
            return Task.CompletedTask;
        }

        var failed = Continue(_stopped, out var gone);

        // The pause the mail server sees: the agent's whole quiesce also counts what it did before the
        // hold (doveadm index while mail still flows), this counts only what delivery waited for.
        AgentLog.MailStep(_logger, "release", _configDirectory, "delivery held (qmgr stopped to continued)", Stopwatch.GetElapsedTime(_heldSince).TotalMilliseconds);
        if (failed.Count > 0)
        {
            // The journal entry stays: the agent's next start tries again.
            throw Failure(_configDirectory, $"its queue manager {string.Join(", ", failed)} could not be continued; continue it by hand: kill -CONT {string.Join(' ', _stopped.Select(s => s.Pid))}");
        }

        if (gone.Count > 0)
        {
            AgentLog.PostfixManagerGone(_logger, _configDirectory, string.Join(", ", gone));
        }

        if (_journalEntry is not null)
        {
            _journal!.Remove(_journalEntry);
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Continues the queue manager a previous run of the agent stopped and never continued (it was
    /// killed): SIGCONT to each process of the entry that is still the same one (pid, name and start
    /// time, same boot). One that has gone needs nothing (the master started a new one, or Postfix
    /// stopped). Returns whether the entry is settled and what happened.
    /// </summary>
    public static (bool Settled, string Message) ContinueLeftover(QuiesceJournalEntry entry)
    {
        var where = $"postfix ({entry.PostfixConfig})";
        var stopped = entry.Stopped ?? [];
        if (entry.BootId != QuiesceJournal.BootId())
        {
            return (true, $"{where}: a previous run of the agent stopped its queue manager before the host restarted; nothing to continue");
        }

        var failed = Continue(stopped, out var gone);
        var continued = stopped.Where(s => !gone.Contains(s.Pid) && !failed.Contains(s.Pid)).Select(s => s.Pid).ToList();
        return failed.Count > 0
            ? (false, $"{where}: the queue manager a previous run of the agent stopped (pid {string.Join(", ", failed)}) could not be continued; continue it by hand: kill -CONT {string.Join(' ', failed)}")
            : (true, $"{where}: a previous run of the agent (pid {entry.AgentPid}) stopped during a delivery hold; {(continued.Count > 0 ? $"its queue manager (pid {string.Join(", ", continued)}) continued" : $"its queue manager (pid {string.Join(", ", gone)}) had gone, nothing to continue")}");
    }

    /// <summary>SIGCONT to each process that is still the one stopped; the pids that failed, and in <paramref name="gone"/> those no longer there.</summary>
    private static List<int> Continue(IReadOnlyList<StoppedProcess> stopped, out List<int> gone)
    {
        var failed = new List<int>();
        gone = [];
        foreach (var process in stopped)
        {
            if (ProcStat.Read(process.Pid) is not { } now || now.Command != process.Command || now.StartTime != process.StartTime || now.State == ProcStat.Zombie)
            {
                gone.Add(process.Pid);
            }
            else if (Kill(process.Pid, SigCont) != 0)
            {
                (Marshal.GetLastPInvokeError() == ESrch ? gone : failed).Add(process.Pid);
            }
        }

        return failed;
    }

    /// <summary>Until every queue manager is in the stopped state (a process in an uninterruptible call stops when it leaves it).</summary>
    private static async Task WaitStoppedAsync(string configDirectory, IReadOnlyList<StoppedProcess> managers, CancellationToken ct)
    {
        var started = Stopwatch.GetTimestamp();
        foreach (var manager in managers)
        {
            while (ProcStat.Read(manager.Pid) is not { State: ProcStat.Stopped })
            {
                if (ProcStat.Read(manager.Pid) is null or { State: ProcStat.Zombie })
                {
                    throw new StorageException(StorageError.Busy, $"postfix ({configDirectory}): its {manager.Command} (pid {manager.Pid}) exited during the hold; try again");
                }

                if (Stopwatch.GetElapsedTime(started) > _drainTimeout)
                {
                    throw new StorageException(StorageError.Busy, $"postfix ({configDirectory}): its {manager.Command} (pid {manager.Pid}) did not stop within {_drainTimeout.TotalSeconds:0} s");
                }

                await Task.Delay(1, ct);
            }
        }
    }

    /// <summary>
    /// Until two looks in a row (a few ms apart) find every delivery agent between deliveries (see
    /// <see cref="DeliveryAgentLook.Busy"/>); the agents waited for go to the debug log as they finish.
    /// Returns how many were waited for.
    /// </summary>
    private static async Task<int> WaitBetweenDeliveriesAsync(string configDirectory, int master, PostfixSettings settings, IReadOnlyList<StoppedProcess> managers, StepClock clock, CancellationToken ct)
    {
        var commands = settings.Commands.ToHashSet(StringComparer.Ordinal);
        var managerSockets = PostfixDeliveries.SocketsOf(managers.Select(m => m.Pid));
        var active = ProcFs.RealPath(Path.Combine(settings.QueueDirectory, "active")) + "/";
        var started = Stopwatch.GetTimestamp();
        var busyBefore = new Dictionary<int, string>();
        var waited = new HashSet<int>();
        var quiet = 0;
        while (true)
        {
            var busy = PostfixDeliveries.Look(master, commands, managerSockets, active).Select(l => (l.Pid, l.Command, Why: l.Busy())).Where(b => b.Why is not null).ToList();
            foreach (var (pid, command) in busyBefore.Where(b => !busy.Exists(n => n.Pid == b.Key)))
            {
                clock.Finished(command, pid);
            }

            busyBefore = busy.ToDictionary(b => b.Pid, b => b.Command);
            waited.UnionWith(busyBefore.Keys);
            quiet = busy.Count == 0 ? quiet + 1 : 0;
            if (quiet == 2)
            {
                return waited.Count;
            }

            if (Stopwatch.GetElapsedTime(started) > _drainTimeout)
            {
                throw new StorageException(StorageError.Busy, $"postfix ({configDirectory}): delivery agents did not finish their deliveries within {_drainTimeout.TotalSeconds:0} s: {string.Join("; ", busy.Select(b => $"{b.Command} (pid {b.Pid}) {b.Why}"))}");
            }

            await Task.Delay(quiet > 0 ? 5 : 10, ct);
        }
    }

    /// <summary>
    /// Undoes a hold that an agent of an earlier version (which held by defer_transports and a reload)
    /// wrote down and never released (it was killed): puts defer_transports back, reloads and flushes
    /// the queue; kept so that an agent upgraded during such a hold still undoes it. Only when the setting is still what that
    /// run set: a value someone changed since is theirs, and is left alone with a message saying so.
    /// Returns whether the entry is settled (false: it could not be checked, keep it for the next start)
    /// and what happened, for the log and the server's event.
    /// </summary>
    public static async Task<(bool Settled, string Message)> RestoreAsync(QuiesceJournalEntry entry, bool configured, CancellationToken ct)
    {
        var directory = entry.PostfixConfig ?? "";
        var where = $"postfix ({directory}{(configured ? "" : ", no longer in the agent's mail entries")})";
        var byHand = $"by hand: postconf -c {directory} {(entry.Original is null ? "-X defer_transports" : $"-e 'defer_transports = {entry.Original}'")}; postfix -c {directory} reload; postqueue -c {directory} -f";
        if (HostCommand.Find("postconf") is null)
        {
            return (false, $"{where}: a hold from a previous run (defer_transports = {entry.Held}) cannot be undone: postconf is not installed on this host (Debian package postfix); if that Postfix still exists elsewhere, undo it {byHand}");
        }

        if (!File.Exists(Path.Combine(directory, "main.cf")))
        {
            return (false, $"{where}: a hold from a previous run (defer_transports = {entry.Held}) cannot be undone: {Path.Combine(directory, "main.cf")} does not exist; if that Postfix moved, undo it {byHand}");
        }

        HostCommandResult current;
        try
        {
            current = await RunAsync("postconf", "postfix", ["-c", directory, "-n", "defer_transports"], _commandTimeout, ct);
        }
        catch (StorageException ex)
        {
            return (false, $"{where}: could not read defer_transports ({ex.Message}); undo the previous run's hold {byHand}");
        }

        if (current.ExitCode != 0)
        {
            return (false, $"{where}: could not read defer_transports ({current.Describe()}); undo the previous run's hold {byHand}");
        }

        // `postconf -n NAME` prints "NAME = VALUE" when main.cf sets it, nothing when it does not.
        var line = current.StandardOutput.Trim();
        var value = line.Length == 0 ? null : line[(line.IndexOf('=', StringComparison.Ordinal) + 1)..].Trim();
        string done;
        if (value == entry.Held)
        {
            var restore = await RunAsync("postconf", "postfix", ["-c", directory, .. entry.Original is null ? (string[])["-X", "defer_transports"] : ["-e", $"defer_transports = {entry.Original}"]], _commandTimeout, ct);
            if (restore.ExitCode != 0)
            {
                return (false, $"{where}: could not put defer_transports back ({restore.Describe()}); undo it {byHand}");
            }

            Cool(directory);

            done = $"{where}: a previous run of the agent (pid {entry.AgentPid}) stopped during a delivery hold; defer_transports is back to {(entry.Original is null ? "unset" : $"'{entry.Original}'")}";
        }
        else if (value == entry.Original)
        {
            done = $"{where}: a previous run's hold was already undone (defer_transports is {(value is null ? "unset" : $"'{value}'")})";
        }
        else
        {
            return (true, $"{where}: defer_transports is now '{value}', not the '{entry.Held}' a previous run of the agent set for a hold; someone changed it since, so it is left alone (its value before the hold was {(entry.Original is null ? "unset" : $"'{entry.Original}'")})");
        }

        // The master reads main.cf again and the queue goes out now, not at the next retry. A Postfix
        // that is not running reads the restored main.cf when it starts: nothing more to do then.
        var reload = await RunAsync("postfix", "postfix", ["-c", directory, "reload"], _commandTimeout, ct);
        if (reload.ExitCode != 0)
        {
            return (true, $"{done}; 'postfix reload' failed ({reload.Describe()}): is it running? It delivers once started");
        }

        var flush = await RunAsync("postqueue", "postfix", ["-c", directory, "-f"], _commandTimeout, ct);
        return (true, flush.ExitCode == 0 ? $"{done}, reloaded and the queue flushed" : $"{done} and reloaded; 'postqueue -f' failed ({flush.Describe()}), the held mail goes out at the next queue run");
    }

    /// <summary>
    /// Dates main.cf two seconds back after postconf rewrote it: Postfix takes a main.cf modified within
    /// the last second for one an editor is still writing, and the master at the reload and every daemon
    /// it starts sleep 300 ms at a time until it is a second old. postconf has finished writing the file
    /// (a temporary file renamed over it), so there is nothing to wait for. If the time cannot be set,
    /// Postfix waits as before.
    /// </summary>
    private static void Cool(string configDirectory)
    {
        try
        {
            File.SetLastWriteTimeUtc(Path.Combine(configDirectory, "main.cf"), DateTime.UtcNow - TimeSpan.FromSeconds(2));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Slower, not wrong: Postfix cools it down itself.
        }
    }

    private static async Task<int> MasterPidAsync(string configDirectory, string queueDirectory, CancellationToken ct)
    {
        // Read by cat, not File.ReadAllText: .NET takes a shared flock on every file it opens, and the
        // master holds an exclusive one on its pid file for as long as it runs.
        var file = Path.Combine(queueDirectory, "pid", "master.pid");
        var read = await RunAsync("cat", "coreutils", [file], _commandTimeout, ct);
        var text = read.StandardOutput.Trim();
        if (read.ExitCode == 0 && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && Directory.Exists($"/proc/{pid}"))
        {
            PostfixMaster.Remember(queueDirectory, pid);
            return pid;
        }

        throw new StorageException(StorageError.Unavailable, $"postfix ({configDirectory}) is not running ({(read.ExitCode != 0 ? read.StandardError.Trim() : $"no process '{text}' from {file}")}); start it or remove it from the agent's mail entry");
    }

    internal static async Task<string> PostconfAsync(string configDirectory, IReadOnlyList<string> arguments, CancellationToken ct)
    {
        var result = await RunAsync("postconf", "postfix", ["-c", configDirectory, .. arguments], _commandTimeout, ct);
        return result.ExitCode == 0 ? result.StandardOutput : throw Failure(configDirectory, result.Describe());
    }

    /// <summary>A mail tool with a deadline; a missing tool or a timeout is the agent's kind of error, with the package to install.</summary>
    internal static async Task<HostCommandResult> RunAsync(string tool, string package, IReadOnlyList<string> arguments, TimeSpan timeout, CancellationToken ct)
    {
        if (HostCommand.Find(tool) is null)
        {
            throw new StorageException(StorageError.Unsupported, $"{tool} is not installed on this host (Debian package {package})");
        }

        try
        {
            return await HostCommand.RunAsync(tool, arguments, timeout, ct);
        }
        catch (RecoveryException ex)
        {
            throw new StorageException(StorageError.IoError, ex.Message, ex);
        }
    }

    internal static StorageException Failure(string configDirectory, string why) =>
        new(StorageError.IoError, $"postfix ({configDirectory}): {why}");

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
