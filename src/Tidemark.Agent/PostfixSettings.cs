using System.Collections.Concurrent;
using System.Runtime.Versioning;

namespace Tidemark.Agent;

/// <summary>
/// What a delivery hold needs to know of one Postfix instance (<see cref="PostfixHold"/>): its queue
/// directory, the transports that deliver mail, the programs master.cf runs for them and for the
/// queue manager. Each `postconf` is a process start, and a hold runs once per snapshot; the settings
/// change only when main.cf or master.cf does, so they are kept and read again only when either
/// file's bytes differ from the ones they were read from (both are a few KiB: comparing them costs
/// microseconds, where the postconf calls cost tens of milliseconds each and more on a loaded host).
/// </summary>
[SupportedOSPlatform("linux")]
internal sealed record PostfixSettings(
    string QueueDirectory,
    IReadOnlyList<string> MailTransports,
    IReadOnlyList<string> Commands,
    string QueueManager)
{
    private static readonly ConcurrentDictionary<string, (byte[] Main, byte[] Master, string Transports, PostfixSettings Settings)> _cache = new(StringComparer.Ordinal);

    /// <summary>The settings, from the cache when main.cf and master.cf are unchanged (<paramref name="cached"/>), else from two postconf calls.</summary>
    public static async Task<(PostfixSettings Settings, bool Cached)> ReadAsync(string configDirectory, IReadOnlyList<string>? transports, CancellationToken ct)
    {
        byte[] main, master;
        try
        {
            main = await File.ReadAllBytesAsync(Path.Combine(configDirectory, "main.cf"), ct);
            master = await File.ReadAllBytesAsync(Path.Combine(configDirectory, "master.cf"), ct);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw PostfixHold.Failure(configDirectory, $"its configuration cannot be read ({ex.Message})");
        }

        var given = transports is { Count: > 0 } ? string.Join(' ', transports) : "";
        if (_cache.TryGetValue(configDirectory, out var known) && known.Transports == given && known.Main.AsSpan().SequenceEqual(main) && known.Master.AsSpan().SequenceEqual(master))
        {
            return (known.Settings, true);
        }

        var settings = await QueryAsync(configDirectory, transports, ct);
        _cache[configDirectory] = (main, master, given, settings);
        return (settings, false);
    }

    /// <summary>Forgets what was read for <paramref name="configDirectory"/>, so the next hold asks postconf (tests).</summary>
    public static void Forget(string configDirectory) => _cache.TryRemove(configDirectory, out _);

    private static async Task<PostfixSettings> QueryAsync(string configDirectory, IReadOnlyList<string>? transports, CancellationToken ct)
    {
        var values = (await PostfixHold.PostconfAsync(configDirectory, ["-h", "queue_directory", "virtual_transport", "mailbox_transport", "local_transport"], ct)).Split('\n');
        if (values.Length < 4)
        {
            throw PostfixHold.Failure(configDirectory, $"postconf printed {values.Length} values for 4 parameters");
        }

        var mailTransports = transports is { Count: > 0 }
            ? transports
            : values[1..4].Select(v => v.Trim().Split(':')[0]).Where(t => t.Length > 0 && t is not "error" and not "discard").Distinct(StringComparer.Ordinal).ToList();
        if (mailTransports.Count == 0)
        {
            throw PostfixHold.Failure(configDirectory, "it names no transport that delivers mail (virtual_transport, mailbox_transport, local_transport); give the mail entry's transports");
        }

        var (commands, queueManager) = await CommandsAsync(configDirectory, mailTransports, ct);
        return new PostfixSettings(values[0].Trim(), mailTransports, commands, queueManager);
    }

    /// <summary>
    /// The programs master.cf runs for the transports and for the queue manager (field 8 of `postconf
    /// -M NAME/unix`, one call for all of them: qmgr or oqmgr), by which their processes are known; a
    /// service master.cf does not list is known by its name.
    /// </summary>
    private static async Task<(List<string> Transports, string QueueManager)> CommandsAsync(string configDirectory, IReadOnlyList<string> transports, CancellationToken ct)
    {
        var output = await PostfixHold.PostconfAsync(configDirectory, ["-M", .. transports.Select(t => $"{t}/unix"), "qmgr/unix"], ct);
        var programs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n'))
        {
            var fields = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 8 && fields[1] == "unix")
            {
                programs.TryAdd(fields[0], Path.GetFileName(fields[7]));
            }
        }

        return ([.. transports.Select(t => programs.GetValueOrDefault(t, t))], programs.GetValueOrDefault("qmgr", "qmgr"));
    }
}

/// <summary>
/// A Postfix master process known by its pid and its start time (field 22 of /proc/PID/stat), so that
/// a later hold can check it is the same process with one read of /proc instead of a process start to
/// read the pid file (which the master keeps locked: see <see cref="PostfixHold"/>).
/// </summary>
[SupportedOSPlatform("linux")]
internal static class PostfixMaster
{
    private static readonly ConcurrentDictionary<string, (int Pid, string Started)> _known = new(StringComparer.Ordinal);

    /// <summary>The master's pid when the one seen last for <paramref name="queueDirectory"/> still runs, else null.</summary>
    public static int? Known(string queueDirectory) =>
        _known.TryGetValue(queueDirectory, out var known) && StartTime(known.Pid) == known.Started ? known.Pid : null;

    public static void Remember(string queueDirectory, int pid)
    {
        if (StartTime(pid) is { } started)
        {
            _known[queueDirectory] = (pid, started);
        }
    }

    /// <summary>The start time of a running process called master (not a zombie), or null.</summary>
    private static string? StartTime(int pid) =>
        ProcStat.Read(pid) is { Command: "master", State: not ProcStat.Zombie } stat ? stat.StartTime : null;
}
