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

    private readonly string _configDirectory;
    private readonly int _master;
    private readonly string? _original;
    private readonly ILogger _logger;
    private readonly QuiesceJournal? _journal;
    private readonly string? _journalEntry;
    private int _released;

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
        var values = (await PostconfAsync(configDirectory, ["-h", "queue_directory", "virtual_transport", "mailbox_transport", "local_transport", "defer_transports"], ct)).Split('\n');
        if (values.Length < 5)
        {
            throw Failure(configDirectory, $"postconf printed {values.Length} values for 5 parameters");
        }

        var master = await MasterPidAsync(configDirectory, values[0].Trim(), ct);
        var mailTransports = transports is { Count: > 0 }
            ? transports
            : values[1..4].Select(v => v.Trim().Split(':')[0]).Where(t => t.Length > 0 && t is not "error" and not "discard").Distinct(StringComparer.Ordinal).ToList();
        if (mailTransports.Count == 0)
        {
            throw Failure(configDirectory, "it names no transport that delivers mail (virtual_transport, mailbox_transport, local_transport); give the mail entry's transports");
        }

        // Whether defer_transports was set in main.cf at all: release removes it again rather than leave an empty line.
        var explicitly = (await PostconfAsync(configDirectory, ["-n", "defer_transports"], ct)).Trim().Length > 0;
        var original = explicitly ? values[4].Trim() : null;
        var deferred = (original ?? "").Split([' ', ',', '\t'], StringSplitOptions.RemoveEmptyEntries).Union(mailTransports, StringComparer.Ordinal);
        var commands = await DeliveryCommandsAsync(configDirectory, mailTransports, ct);
        var draining = Children(master, commands.Append("qmgr").ToHashSet(StringComparer.Ordinal));
        var held = string.Join(' ', deferred);
        var entry = journal?.Write(configDirectory, QuiesceJournalEntry.Create(QuiesceJournalEntry.Postfix) with { PostfixConfig = configDirectory, Held = held, Original = original });
        try
        {
            await PostconfAsync(configDirectory, ["-e", $"defer_transports = {held}"], ct);
        }
        catch
        {
            if (entry is not null)
            {
                journal!.Remove(entry);
            }

            throw;
        }

        var hold = new PostfixHold(configDirectory, master, original, logger, journal, entry);
        try
        {
            hold.Reload();
            await WaitGoneAsync(draining, ct);
        }
        catch
        {
            await hold.ReleaseAsync();
            throw;
        }

        AgentLog.PostfixHeld(logger, configDirectory, string.Join(", ", mailTransports), draining.Count);
        return hold;
    }

    /// <summary>Gives the transports back and delivers what waited. Safe to call twice (deadline and server race).</summary>
    public async Task ReleaseAsync()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0)
        {
            return;
        }

        var deferring = Children(_master, ["qmgr"]);
        await PostconfAsync(_configDirectory, _original is null ? ["-X", "defer_transports"] : ["-e", $"defer_transports = {_original}"], CancellationToken.None);
        Reload();

        // A flush the old (deferring) queue manager read would only defer the mail again.
        await WaitGoneAsync(deferring, CancellationToken.None);
        var flush = await RunAsync("postqueue", "postfix", ["-c", _configDirectory, "-f"], _commandTimeout, CancellationToken.None);
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
        return read.ExitCode == 0 && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && Directory.Exists($"/proc/{pid}")
            ? pid
            : throw new StorageException(StorageError.Unavailable, $"postfix ({configDirectory}) is not running ({(read.ExitCode != 0 ? read.StandardError.Trim() : $"no process '{text}' from {file}")}); start it or remove it from the agent's mail entry");
    }

    /// <summary>The programs master.cf runs for the transports (field 8 of `postconf -M NAME/unix`), by which their processes are known.</summary>
    private static async Task<List<string>> DeliveryCommandsAsync(string configDirectory, IReadOnlyList<string> transports, CancellationToken ct)
    {
        var commands = new List<string>();
        foreach (var transport in transports)
        {
            var line = (await PostconfAsync(configDirectory, ["-M", $"{transport}/unix"], ct)).Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            commands.Add(line.Length >= 8 ? Path.GetFileName(line[7]) : transport);
        }

        return commands;
    }

    /// <summary>The master's children running one of <paramref name="commands"/> (/proc/PID/stat: comm and parent).</summary>
    private static List<int> Children(int master, HashSet<string> commands)
    {
        var found = new List<int>();
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
                    found.Add(pid);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Exited while we looked: not draining any more.
            }
        }

        return found;
    }

    private static async Task WaitGoneAsync(List<int> pids, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow + _drainTimeout;
        while (pids.Any(IsRunning))
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new StorageException(StorageError.Busy, $"postfix delivery processes {string.Join(", ", pids.Where(IsRunning))} did not finish their deliveries within {_drainTimeout.TotalSeconds:0} s");
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

    private static async Task<string> PostconfAsync(string configDirectory, IReadOnlyList<string> arguments, CancellationToken ct)
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

    private static StorageException Failure(string configDirectory, string why) =>
        new(StorageError.IoError, $"postfix ({configDirectory}): {why}");

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
