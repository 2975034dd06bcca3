using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Tidemark.Agent;

/// <summary>
/// One line of /proc/PID/stat (proc(5)): "PID (COMM) STATE PPID ... STARTTIME ...". COMM may hold
/// spaces and parentheses, so the fields after it are split after its last closing parenthesis.
/// </summary>
internal readonly record struct ProcStat(int Pid, string Command, char State, int Parent, string StartTime)
{
    /// <summary>Stopped by a signal (SIGSTOP): 'T'. A zombie (exited, not yet reaped by its parent): 'Z'.</summary>
    public const char Stopped = 'T';
    public const char Zombie = 'Z';
    public const char Sleeping = 'S';

    public static ProcStat? Parse(string text)
    {
        var open = text.IndexOf('(', StringComparison.Ordinal);
        var close = text.LastIndexOf(')');
        if (open <= 0 || close < open || close + 2 >= text.Length
            || !int.TryParse(text.AsSpan(0, open).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
        {
            return null;
        }

        // After COMM: field 3 (state) is rest[0], field 4 (ppid) rest[1], field 22 (starttime) rest[19].
        var rest = text[(close + 2)..].Split(' ');
        return rest.Length > 19 && rest[0].Length == 1 && int.TryParse(rest[1], NumberStyles.None, CultureInfo.InvariantCulture, out var parent)
            ? new ProcStat(pid, text[(open + 1)..close], rest[0][0], parent, rest[19])
            : null;
    }

    /// <summary>The process's stat now, or null when it has gone.</summary>
    public static ProcStat? Read(int pid)
    {
        try
        {
            return Parse(File.ReadAllText(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/stat")));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Every process whose parent is <paramref name="parent"/> and whose COMM is one of <paramref name="commands"/>.</summary>
    public static List<ProcStat> Children(int parent, IReadOnlySet<string> commands)
    {
        var found = new List<ProcStat>();
        foreach (var entry in Directory.EnumerateDirectories("/proc"))
        {
            if (int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && Read(pid) is { } stat && stat.Parent == parent && commands.Contains(stat.Command))
            {
                found.Add(stat);
            }
        }

        return found;
    }
}

/// <summary>What /proc tells of a process beyond its stat: the system call it is blocked in, and its open files.</summary>
[SupportedOSPlatform("linux")]
internal static partial class ProcFs
{
    /// <summary>
    /// The system calls a Postfix daemon sleeps in while it waits for work: poll, select, epoll_wait
    /// and their p-variants, accept (a descriptor to become readable, a connection), and flock (an
    /// idle process of a service with several waits for the service's accept lock, single_server.c,
    /// while another one polls; seen here: the second lmtp agent in flock, the first in epoll_wait).
    /// Numbers per architecture (arch/x86/entry/syscalls/syscall_64.tbl; include/uapi/asm-generic/unistd.h
    /// for arm64, which has only the p-variants). A process asleep in another call (writing a log
    /// line, a disk read) is not known to be waiting.
    /// </summary>
    private static readonly Dictionary<Architecture, HashSet<int>> _waitCalls = new()
    {
        [Architecture.X64] = [7, 23, 232, 270, 271, 281, 441, 43, 288, 73],
        [Architecture.Arm64] = [72, 73, 22, 441, 202, 242, 32],
    };

    /// <summary>
    /// /proc/PID/syscall (proc(5)): "NR ARG1 ... ARG6 SP PC" while blocked in system call NR, "-1 SP PC"
    /// while blocked outside one (a page fault), "running" while on a CPU. Null for anything but a call.
    /// </summary>
    public static int? ParseSyscall(string text)
    {
        var first = text.AsSpan().Trim();
        var space = first.IndexOf(' ');
        return int.TryParse(space < 0 ? first : first[..space], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) && number >= 0 ? number : null;
    }

    /// <summary>Whether system call <paramref name="number"/> only waits for input on <paramref name="architecture"/> (false where the table has no entry).</summary>
    public static bool IsWaitCall(int number, Architecture architecture) =>
        _waitCalls.TryGetValue(architecture, out var calls) && calls.Contains(number);

    /// <summary>Whether the process sleeps (state S) inside a call that only waits for input; false when it has gone.</summary>
    public static bool IsWaitingForInput(int pid, char state)
    {
        if (state != ProcStat.Sleeping)
        {
            return false;
        }

        try
        {
            return ParseSyscall(File.ReadAllText(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/syscall"))) is { } number
                && IsWaitCall(number, RuntimeInformation.ProcessArchitecture);
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>
    /// The target of a /proc/PID/fd link: "socket:[INODE]" for a socket (its inode in <paramref name="socket"/>),
    /// else a path (in <paramref name="path"/>, without the " (deleted)" the kernel adds for an unlinked file).
    /// </summary>
    public static void ParseFdTarget(string target, out ulong? socket, out string? path)
    {
        socket = null;
        path = null;
        if (target.StartsWith("socket:[", StringComparison.Ordinal) && target.EndsWith(']')
            && ulong.TryParse(target.AsSpan(8, target.Length - 9), NumberStyles.None, CultureInfo.InvariantCulture, out var inode))
        {
            socket = inode;
        }
        else if (target.StartsWith('/'))
        {
            path = target.EndsWith(" (deleted)", StringComparison.Ordinal) ? target[..^10] : target;
        }
    }

    /// <summary>
    /// The process's open sockets (inodes) and files (paths), from its /proc/PID/fd links. Reading
    /// another user's needs CAP_SYS_PTRACE (root has it); null when the process has gone.
    /// </summary>
    public static (HashSet<ulong> Sockets, List<string> Files)? OpenFiles(int pid)
    {
        var sockets = new HashSet<ulong>();
        var files = new List<string>();
        IEnumerable<string> links;
        try
        {
            links = Directory.EnumerateFileSystemEntries(string.Create(CultureInfo.InvariantCulture, $"/proc/{pid}/fd")).ToList();
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }

        foreach (var link in links)
        {
            string? target;
            try
            {
                target = new FileInfo(link).LinkTarget;
            }
            catch (IOException)
            {
                // Closed while we looked.
                continue;
            }

            ParseFdTarget(target ?? "", out var socket, out var path);
            if (socket is { } inode)
            {
                sockets.Add(inode);
            }
            else if (path is not null)
            {
                files.Add(path);
            }
        }

        return (sockets, files);
    }

    /// <summary>
    /// The path with every symbolic link resolved (realpath(3)), as the kernel prints the targets of
    /// /proc/PID/fd; the path itself when it cannot be resolved.
    /// </summary>
    public static string RealPath(string path) => Resolve(path, 0) ?? path;

    [LibraryImport("libc", EntryPoint = "realpath", StringMarshalling = StringMarshalling.Utf8)]
    private static partial string? Resolve(string path, nint resolved);
}
