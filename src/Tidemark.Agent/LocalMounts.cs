using Tidemark.Api;

namespace Tidemark.Agent;

/// <summary>
/// The host's mounts, read from /proc/self/mountinfo (cheap: one small file), joined with the
/// volumes the config declares. A loop device's backing file comes from /sys/block/loopN/loop, which
/// is how a volume attached through nbdfuse shows; the nbdfuse process serving that file gives the
/// export's URI (<see cref="NbdFuseAttachments"/>), which the server's export URLs map to a volume at
/// each quiesce. A declaration in the config wins over that.
/// </summary>
public static class LocalMounts
{
    /// <summary>The file systems FIFREEZE is known to work on (the kernel's freeze_fs implementations that matter here).</summary>
    public static readonly IReadOnlySet<string> Freezable = new HashSet<string>(StringComparer.Ordinal) { "ext4", "ext3", "xfs", "btrfs" };

    /// <summary>
    /// The mounts an agent could quiesce (and the declared ones not mounted). <paramref name="procRoot"/>:
    /// where nbdfuse processes are looked for when a mount sits on a loop device (null: not looked for).
    /// </summary>
    public static IReadOnlyList<AgentMountDto> List(AgentConfig config, string mountInfoPath = "/proc/self/mountinfo", string? procRoot = "/proc")
    {
        var declared = config.Mounts.ToDictionary(m => Normalize(m.Path), m => m.Volume, StringComparer.Ordinal);
        var result = new List<AgentMountDto>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        IReadOnlyDictionary<string, string>? served = null;
        foreach (var (path, fileSystem, source) in Read(mountInfoPath))
        {
            var isDeclared = declared.TryGetValue(path, out var volume);
            if (!Freezable.Contains(fileSystem) && !isDeclared)
            {
                continue; // proc, tmpfs, overlay...: nothing an agent would quiesce
            }

            seen.Add(path);
            var backing = BackingFile(source);
            string? attachment = null;
            if (backing is not null && procRoot is not null)
            {
                served ??= NbdFuseAttachments.Discover(procRoot);
                served.TryGetValue(Normalize(backing), out attachment);
            }

            result.Add(new AgentMountDto(path, fileSystem, source, volume, backing, Freezable.Contains(fileSystem), attachment));
        }

        // Declared but not mounted now: shown, so a typo or a missing mount is visible in 'host status'.
        foreach (var (path, volume) in declared.Where(d => !seen.Contains(d.Key)))
        {
            result.Add(new AgentMountDto(path, "(not mounted)", "", volume, null, false));
        }

        return result;
    }

    public static string Normalize(string path) => path.Length > 1 ? path.TrimEnd('/') : path;

    /// <summary>
    /// The declared mount whose file system holds <paramref name="directory"/> (the same device in the
    /// mount table, so a bind mount of it counts too), or null. The agent writes its quiesce journal
    /// there between steps; on a file system it freezes, that write would block until the thaw, which
    /// only the blocked agent would do.
    /// </summary>
    public static AgentMountEntry? DeclaredMountHolding(AgentConfig config, string directory, string mountInfoPath = "/proc/self/mountinfo")
    {
        var real = RealPath(directory);
        var table = new List<(string MountPoint, string Device)>();
        foreach (var line in File.ReadLines(mountInfoPath))
        {
            var fields = line.Split(' ');
            if (fields.Length >= 5)
            {
                table.Add((Unescape(fields[4]), fields[2]));
            }
        }

        // The deepest mount point above it; among mounts stacked on one point, the last (the visible one).
        var holding = table
            .Select((m, i) => (m.MountPoint, m.Device, Line: i))
            .Where(m => real == m.MountPoint || real.StartsWith(m.MountPoint == "/" ? "/" : m.MountPoint + "/", StringComparison.Ordinal))
            .OrderBy(m => m.MountPoint.Length).ThenBy(m => m.Line)
            .LastOrDefault();
        if (holding.MountPoint is null)
        {
            return null;
        }

        return config.Mounts.FirstOrDefault(m => table.LastOrDefault(t => t.MountPoint == RealPath(m.Path)).Device == holding.Device);
    }

    /// <summary>Says why <paramref name="agentDirectory"/> may not sit on <paramref name="mount"/>, and what to do.</summary>
    public static string AgentDirectoryProblem(string agentDirectory, AgentMountEntry mount) =>
        $"the agent directory {agentDirectory} (its quiesce journal, identity and config) is on the file system of {mount.Path} (volume {mount.Volume}), which the agent freezes for that volume's snapshots: a journal write during the freeze would hang the quiesce; put the agent directory on a file system no snapshot freezes (--agent-dir or $TIDEMARK_AGENT_DIR, default /var/lib/tidemark-agent)";

    /// <summary>The path with every symbolic link in it resolved (parts that do not exist yet are kept as given).</summary>
    internal static string RealPath(string path, int depth = 0)
    {
        if (depth > 40)
        {
            throw new IOException($"{path}: too many levels of symbolic links");
        }

        var current = "/";
        foreach (var part in Path.GetFullPath(path).Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var next = Path.Combine(current, part);
            current = new FileInfo(next).LinkTarget is { } target ? RealPath(Path.GetFullPath(target, current), depth + 1) : next;
        }

        return current;
    }

    /// <summary>
    /// Which mount is at <paramref name="path"/> now ("ID MAJ:MIN SOURCE" of the last mountinfo line
    /// there), or null: the freeze journal compares it at the next start, so a file system mounted
    /// there since (another mount, another device) is never thawed for a freeze it did not get.
    /// </summary>
    public static string? MountId(string path, string mountInfoPath = "/proc/self/mountinfo")
    {
        string? found = null;
        foreach (var line in File.ReadLines(mountInfoPath))
        {
            var fields = line.Split(' ');
            var dash = Array.IndexOf(fields, "-");
            if (fields.Length >= 5 && dash >= 0 && dash + 2 < fields.Length && Unescape(fields[4]) == path)
            {
                found = $"{fields[0]} {fields[2]} {fields[dash + 2]}";
            }
        }

        return found;
    }

    private static IEnumerable<(string Path, string FileSystem, string Source)> Read(string mountInfoPath)
    {
        // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        foreach (var line in File.ReadLines(mountInfoPath))
        {
            var fields = line.Split(' ');
            var dash = Array.IndexOf(fields, "-");
            if (fields.Length < 5 || dash < 0 || dash + 2 >= fields.Length)
            {
                continue;
            }

            yield return (Unescape(fields[4]), fields[dash + 1], Unescape(fields[dash + 2]));
        }
    }

    /// <summary>mountinfo escapes space, tab, newline and backslash as \ooo (octal).</summary>
    private static string Unescape(string value)
    {
        if (!value.Contains('\\', StringComparison.Ordinal))
        {
            return value;
        }

        var builder = new System.Text.StringBuilder(value.Length);
        for (var i = 0; i < value.Length; i++)
        {
            if (value[i] == '\\' && IsOctal(value, i + 1))
            {
                builder.Append((char)Convert.ToInt32(value.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                builder.Append(value[i]);
            }
        }

        return builder.ToString();
    }

    private static readonly System.Buffers.SearchValues<char> _octal = System.Buffers.SearchValues.Create("01234567");

    private static bool IsOctal(string value, int start) =>
        start + 3 <= value.Length && value.AsSpan(start, 3).IndexOfAnyExcept(_octal) < 0;

    private static string? BackingFile(string source)
    {
        if (!source.StartsWith("/dev/loop", StringComparison.Ordinal))
        {
            return null;
        }

        var file = Path.Combine("/sys/block", Path.GetFileName(source), "loop", "backing_file");
        try
        {
            return File.Exists(file) ? File.ReadAllText(file).Trim() : null;
        }
        catch (IOException)
        {
            return null; // the loop device went away meanwhile
        }
    }
}
