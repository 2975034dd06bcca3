using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;
using Tidemark.Recovery;

namespace Tidemark.Agent;

/// <summary>
/// Stops one Postfix instance's delivery agents for the cut (ADR 0015). Why not `postsuper -h ALL`:
/// it holds what is queued at that moment, but neither a delivery already handed to an agent nor a
/// message that arrives a moment later, so a message could still be half-written into the mail store
/// (or delivered to one recipient of two) across the cut. Instead the mail transports (those of
/// virtual_transport, mailbox_transport and local_transport, or the configured ones) are added to
/// defer_transports and the master is told to reload (SIGHUP, what `postfix reload` sends without its
/// checks); the queue manager and delivery agents of the old configuration finish the delivery they
/// are in and exit, and the hold waits for exactly those processes. New mail is still accepted over
/// SMTP and waits in the queue. Release puts defer_transports back as it was, reloads, waits for the
/// deferring queue manager to go, and flushes the queue (`postqueue -f`) so the held mail is
/// delivered at once rather than at the next retry.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed partial class PostfixHold
{
    private const int SigHup = 1;
    private static readonly TimeSpan _commandTimeout = TimeSpan.FromSeconds(30);

    /// <summary>A delivery in progress is one message to a local store: seconds, not minutes.</summary>
    private static readonly TimeSpan _drainTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Postfix waits while main.cf is less than a second old (whole seconds): two is clear of it.</summary>
    private static readonly TimeSpan _coolDown = TimeSpan.FromSeconds(2);

    private readonly string _configDirectory;
    private readonly int _master;
    private readonly string? _original;
    private readonly ILogger _logger;
    private readonly QuiesceJournal? _journal;
    private readonly string? _journalEntry;
    private int _released;

    /// <summary>When the hold's reload was sent: from then until the release's flush, delivery waits.</summary>
    private long _heldSince;

    private PostfixHold(string configDirectory, int master, string? original, ILogger logger, QuiesceJournal? journal, string? journalEntry)
    {
        _configDirectory = configDirectory;
        _master = master;
        _original = original;
        _logger = logger;
        _journal = journal;
        _journalEntry = journalEntry;
    }

    /// <summary>Holds delivery; with a <paramref name="journal"/>, the original defer_transports is written down durably first (undone at the agent's next start if it dies holding).</summary>
    public static async Task<PostfixHold> HoldAsync(string configDirectory, IReadOnlyList<string>? transports, ILogger logger, CancellationToken ct, QuiesceJournal? journal = null)
    {
        var clock = new StepClock(logger, "hold", configDirectory);
        var (settings, cached) = await PostfixSettings.ReadAsync(configDirectory, transports, ct);
        clock.Lap(cached ? "settings (unchanged)" : "settings (postconf)");
        var master = PostfixMaster.Known(settings.QueueDirectory) ?? await MasterPidAsync(configDirectory, settings.QueueDirectory, ct);
        clock.Lap("master pid");
        var original = settings.Original;
        var deferred = (original ?? "").Split([' ', ',', '\t'], StringSplitOptions.RemoveEmptyEntries).Union(settings.MailTransports, StringComparer.Ordinal);
        var held = string.Join(' ', deferred);
        var entry = journal?.Write(configDirectory, QuiesceJournalEntry.Create(QuiesceJournalEntry.Postfix) with { PostfixConfig = configDirectory, Held = held, Original = original });
        clock.Lap("journal");
        try
        {
            await PostconfAsync(configDirectory, ["-e", $"defer_transports = {held}"], ct);
            Cool(configDirectory);
            clock.Lap("postconf -e");
        }
        catch
        {
            if (entry is not null)
            {
                journal!.Remove(entry);
            }

            throw;
        }

        // Listed after the edit, not before: a queue manager or delivery agent the master starts from
        // now on reads the new main.cf; one started before it is in the list, however shortly before.
        var draining = Children(master, settings.Commands.Append("qmgr").ToHashSet(StringComparer.Ordinal));
        clock.Lap("children");
        var hold = new PostfixHold(configDirectory, master, original, logger, journal, entry);
        try
        {
            hold._heldSince = Stopwatch.GetTimestamp();
            hold.Reload();
            await WaitGoneAsync(draining, clock, ct);
            clock.Lap("reload and drain");
        }
        catch
        {
            await hold.ReleaseAsync();
            throw;
        }

        AgentLog.PostfixHeld(logger, configDirectory, string.Join(", ", settings.MailTransports), draining.Count);
        return hold;
    }

    /// <summary>Gives the transports back and delivers what waited. Safe to call twice (deadline and server race).</summary>
    public async Task ReleaseAsync()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0)
        {
            return;
        }

        var clock = new StepClock(_logger, "release", _configDirectory);
        await PostconfAsync(_configDirectory, _original is null ? ["-X", "defer_transports"] : ["-e", $"defer_transports = {_original}"], CancellationToken.None);
        Cool(_configDirectory);
        clock.Lap("postconf");

        // After the edit (as at the hold): a deferring queue manager the master started between a list
        // made before it and the reload would be missed, read the flush, and defer the held mail again
        // until its next retry (minutes).
        var deferring = Children(_master, ["qmgr"]);
        clock.Lap("children");
        Reload();

        // A flush the old (deferring) queue manager read would only defer the mail again.
        await WaitGoneAsync(deferring, clock, CancellationToken.None);
        clock.Lap("reload and drain");
        var flush = await RunAsync("postqueue", "postfix", ["-c", _configDirectory, "-f"], _commandTimeout, CancellationToken.None);
        clock.Lap("postqueue -f");

        // The pause the mail server sees: the agent's whole quiesce also counts what it did before the
        // hold (doveadm index while mail still flows), this counts only what delivery waited for.
        AgentLog.MailStep(_logger, "release", _configDirectory, "delivery held (hold's reload to release's flush)", Stopwatch.GetElapsedTime(_heldSince).TotalMilliseconds);
        if (flush.ExitCode != 0)
        {
            // Delivery is resumed; only the immediate retry is missing: the queue manager retries on its own.
            AgentLog.PostfixFlushFailed(_logger, _configDirectory, flush.Describe());
        }

        if (_journalEntry is not null)
        {
            _journal!.Remove(_journalEntry);
        }
    }

    /// <summary>
    /// Undoes a hold a previous run of the agent wrote down and never released (it was killed): puts
    /// defer_transports back, reloads and flushes the queue. Only when the setting is still what that
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
    /// Dates main.cf two seconds back after postconf rewrote it. Postfix takes a main.cf modified within
    /// the last second for one an editor is still writing: the master at the reload, and then every
    /// daemon it starts (the new qmgr, postlogd, the delivery agents), reads it, sleeps 300 ms and reads
    /// it again until it is a second old ("pausing to let main.cf cool down", libpostfix-util). Measured
    /// here (bench/agent/mail-pause.sh, steps in the agent's debug log): 1.5-2 s per reload, and while the
    /// new postlogd cooled down, every Postfix process that logged (the old qmgr the hold waits for, the
    /// delivery agents, postqueue) blocked on the full log socket; twice per snapshot, most of the 5.6 s
    /// the mail server's delivery was held. postconf has finished writing the file (a temporary file
    /// renamed over it), so there is nothing to wait for. If the time cannot be set, Postfix waits as before.
    /// </summary>
    private static void Cool(string configDirectory)
    {
        try
        {
            File.SetLastWriteTimeUtc(Path.Combine(configDirectory, "main.cf"), DateTime.UtcNow - _coolDown);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Slower, not wrong: Postfix cools it down itself.
        }
    }

    private void Reload()
    {
        if (Kill(_master, SigHup) != 0)
        {
            throw Failure(_configDirectory, $"its master (pid {_master}) could not be told to reload (errno {Marshal.GetLastPInvokeError()}); is it still running?");
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

    /// <summary>The master's children running one of <paramref name="commands"/> (/proc/PID/stat: comm and parent).</summary>
    private static List<(int Pid, string Command)> Children(int master, HashSet<string> commands)
    {
        var found = new List<(int Pid, string Command)>();
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }

            try
            {
                // "PID (COMM) STATE PPID ...": COMM may hold spaces, so split after its closing parenthesis.
                var stat = File.ReadAllText(Path.Combine(entry, "stat"));
                var open = stat.IndexOf('(', StringComparison.Ordinal);
                var close = stat.LastIndexOf(')');
                var rest = stat[(close + 2)..].Split(' ');
                if (open > 0 && close > open && rest.Length > 1 && rest[1] == master.ToString(CultureInfo.InvariantCulture) && commands.Contains(stat[(open + 1)..close]))
                {
                    found.Add((pid, stat[(open + 1)..close]));
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Exited while we looked: not draining any more.
            }
        }

        return found;
    }

    /// <summary>Waits until every one of <paramref name="processes"/> has exited; the time each took goes to the debug log.</summary>
    private static async Task WaitGoneAsync(List<(int Pid, string Command)> processes, StepClock clock, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + _drainTimeout;
        var running = new List<(int Pid, string Command)>(processes);
        while (running.Count > 0)
        {
            foreach (var process in running.Where(p => !IsRunning(p.Pid)).ToList())
            {
                clock.Exited(process.Command, process.Pid);
                running.Remove(process);
            }

            if (running.Count == 0)
            {
                break;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new StorageException(StorageError.Busy, $"postfix delivery processes {string.Join(", ", running.Select(p => p.Pid))} did not finish their deliveries within {_drainTimeout.TotalSeconds:0} s");
            }

            await Task.Delay(20, ct);
        }
    }

    /// <summary>Running and not a zombie (an exited child of the master lingers as one until reaped).</summary>
    private static bool IsRunning(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var close = stat.LastIndexOf(')');
            return close > 0 && close + 2 < stat.Length && stat[close + 2] != 'Z';
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
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
