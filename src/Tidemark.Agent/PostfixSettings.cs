using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.Versioning;
using System.Text;
using System.Text.RegularExpressions;

namespace Tidemark.Agent;

/// <summary>
/// What a delivery hold needs to know of one Postfix instance (<see cref="PostfixHold"/>): its queue
/// directory, the transports that deliver mail, the programs master.cf runs for them, and
/// defer_transports as main.cf sets it. Each `postconf` is a process start, and a hold runs once per
/// snapshot; the settings change only when main.cf or master.cf does, so they are kept and read again
/// only when either file's bytes differ from the ones they were read from (both are a few KiB:
/// comparing them costs microseconds, where the postconf calls cost tens of milliseconds each and
/// more on a loaded host). A release puts main.cf back byte for byte, so the next hold hits.
/// </summary>
[SupportedOSPlatform("linux")]
internal sealed partial record PostfixSettings(
    string QueueDirectory,
    IReadOnlyList<string> MailTransports,
    string? Original,
    IReadOnlyList<string> Commands)
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

        var settings = await QueryAsync(configDirectory, transports, Encoding.UTF8.GetString(main), ct);
        _cache[configDirectory] = (main, master, given, settings);
        return (settings, false);
    }

    /// <summary>Forgets what was read for <paramref name="configDirectory"/>, so the next hold asks postconf (tests).</summary>
    public static void Forget(string configDirectory) => _cache.TryRemove(configDirectory, out _);

    /// <summary>
    /// Whether main.cf sets defer_transports itself (what `postconf -n defer_transports` answers, without
    /// its process): a parameter line starts at the first column with the name and `=` (a line that
    /// starts with white space continues the one before, `#` starts a comment; postconf(5)).
    /// </summary>
    public static bool SetsDeferTransports(string mainCf) => DeferTransportsLine().IsMatch(mainCf);

    private static async Task<PostfixSettings> QueryAsync(string configDirectory, IReadOnlyList<string>? transports, string mainCf, CancellationToken ct)
    {
        var values = (await PostfixHold.PostconfAsync(configDirectory, ["-h", "queue_directory", "virtual_transport", "mailbox_transport", "local_transport", "defer_transports"], ct)).Split('\n');
        if (values.Length < 5)
        {
            throw PostfixHold.Failure(configDirectory, $"postconf printed {values.Length} values for 5 parameters");
        }

        var mailTransports = transports is { Count: > 0 }
            ? transports
            : values[1..4].Select(v => v.Trim().Split(':')[0]).Where(t => t.Length > 0 && t is not "error" and not "discard").Distinct(StringComparer.Ordinal).ToList();
        if (mailTransports.Count == 0)
        {
            throw PostfixHold.Failure(configDirectory, "it names no transport that delivers mail (virtual_transport, mailbox_transport, local_transport); give the mail entry's transports");
        }

        // Whether defer_transports was set in main.cf at all: release removes it again rather than leave an empty line.
        var original = SetsDeferTransports(mainCf) ? values[4].Trim() : null;
        return new PostfixSettings(values[0].Trim(), mailTransports, original, await DeliveryCommandsAsync(configDirectory, mailTransports, ct));
    }

    /// <summary>
    /// The programs master.cf runs for the transports (field 8 of `postconf -M NAME/unix`, one call for
    /// all of them), by which their processes are known; a transport master.cf does not list is known by its name.
    /// </summary>
    private static async Task<List<string>> DeliveryCommandsAsync(string configDirectory, IReadOnlyList<string> transports, CancellationToken ct)
    {
        var output = await PostfixHold.PostconfAsync(configDirectory, ["-M", .. transports.Select(t => $"{t}/unix")], ct);
        var programs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var line in output.Split('\n'))
        {
            var fields = line.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length >= 8 && fields[1] == "unix")
            {
                programs.TryAdd(fields[0], Path.GetFileName(fields[7]));
            }
        }

        return [.. transports.Select(t => programs.GetValueOrDefault(t, t))];
    }

    [GeneratedRegex(@"^defer_transports[ \t]*=", RegexOptions.Multiline | RegexOptions.CultureInvariant)]
    private static partial Regex DeferTransportsLine();
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
    private static string? StartTime(int pid)
    {
        try
        {
            // "PID (COMM) STATE PPID ... STARTTIME" (proc(5)): fields after COMM, which may hold spaces.
            var stat = File.ReadAllText(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/stat"));
            var open = stat.IndexOf('(', StringComparison.Ordinal);
            var close = stat.LastIndexOf(')');
            var rest = close > open && open > 0 && close + 2 < stat.Length ? stat[(close + 2)..].Split(' ') : [];
            return rest.Length > 19 && rest[0] != "Z" && stat[(open + 1)..close] == "master" ? rest[19] : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
