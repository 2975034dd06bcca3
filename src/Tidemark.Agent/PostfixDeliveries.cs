using System.Runtime.Versioning;

namespace Tidemark.Agent;

/// <summary>
/// What one look at a delivery agent saw (<see cref="PostfixDeliveries"/>), in the order it was
/// taken: the unread bytes on its connection to the queue manager, both ways (sock_diag), then
/// whether it slept in a call that only waits for input (/proc/PID/stat and syscall), then the
/// queue files it had open (/proc/PID/fd).
/// </summary>
internal readonly record struct DeliveryAgentLook(int Pid, string Command, uint RequestUnread, uint StatusUnread, bool WaitingForInput, bool Gone, IReadOnlyList<string> QueueFiles)
{
    /// <summary>
    /// Null when the agent delivers nothing now and cannot start to while the queue manager is
    /// stopped; else why it may be delivering. The queue manager sends a request only after it read
    /// the agent's initial status, the agent opens the queue file (and locks it) after it read the
    /// request, and it keeps the file open until the queue manager has read its final status and
    /// closed the connection (deliver_request.c). So, with the queue manager stopped:
    /// a request not read yet is a delivery to come; bytes the queue manager has not read are the
    /// final status of a delivery that is over (or an initial status with no request behind it);
    /// an open queue file without them is a delivery under way; and an agent with neither that is
    /// not asleep waiting for input may be between reading a request and opening its file.
    /// </summary>
    public string? Busy() =>
        Gone ? null
        : RequestUnread > 0 ? $"has a delivery request of {RequestUnread} bytes to read"
        : StatusUnread > 0 ? null
        : QueueFiles.Count > 0 ? $"is delivering {string.Join(", ", QueueFiles.Select(Path.GetFileName))}"
        : WaitingForInput ? null
        : "is running between requests";
}

/// <summary>
/// Whether the delivery agents of one Postfix instance are all between deliveries, with its queue
/// manager stopped (<see cref="PostfixHold"/>, ADR 0015).
/// </summary>
[SupportedOSPlatform("linux")]
internal static class PostfixDeliveries
{
    /// <summary>
    /// One look at every delivery agent (the master's children running <paramref name="commands"/>).
    /// The socket queues are read first, for all agents at once: a request the stopped queue manager
    /// sent is in the agent's queue from then on until the agent reads it, so an agent with nothing
    /// to read at that moment had read its request (if any) before it. Then each agent's state: one
    /// asleep in a wait for input afterwards is past opening its queue file (no wait comes between
    /// reading the request and opening the file), and one past opening it keeps the file open until
    /// the queue manager closes the connection, which the fd links read last then show.
    /// </summary>
    public static List<DeliveryAgentLook> Look(int master, IReadOnlySet<string> commands, IReadOnlySet<ulong> queueManagerSockets, string activeDirectory)
    {
        var agents = ProcStat.Children(master, commands);
        Dictionary<ulong, UnixSocketState> sockets;
        try
        {
            sockets = UnixSocketDiag.Dump();
        }
        catch (IOException ex)
        {
            throw new StorageException(StorageError.IoError, $"the kernel's table of unix sockets could not be read ({ex.Message}), so whether Postfix's delivery agents are in a delivery is unknown");
        }

        var looks = new List<DeliveryAgentLook>(agents.Count);
        foreach (var agent in agents)
        {
            var stat = ProcStat.Read(agent.Pid);
            bool waiting;
            (HashSet<ulong> Sockets, List<string> Files)? open;
            try
            {
                waiting = stat is { } s && ProcFs.IsWaitingForInput(agent.Pid, s.State);
                open = stat is null or { State: ProcStat.Zombie } ? null : ProcFs.OpenFiles(agent.Pid);
            }
            catch (UnauthorizedAccessException ex)
            {
                throw new StorageException(StorageError.Unsupported, $"the agent cannot read /proc/{agent.Pid} of Postfix's {agent.Command} ({ex.Message}): holding delivery needs root (CAP_SYS_PTRACE)");
            }

            if (open is not { } files)
            {
                looks.Add(new DeliveryAgentLook(agent.Pid, agent.Command, 0, 0, false, Gone: true, []));
                continue;
            }

            uint request = 0, status = 0;
            foreach (var inode in files.Sockets)
            {
                // The agent's end of a connection whose other end the queue manager holds. A socket
                // newer than the dump cannot carry a request: the agent has not sent its initial status on it yet.
                if (sockets.TryGetValue(inode, out var mine) && queueManagerSockets.Contains(mine.Peer))
                {
                    request += mine.Unread;
                    status += sockets.TryGetValue(mine.Peer, out var theirs) ? theirs.Unread : 0;
                }
            }

            var queueFiles = files.Files.Where(f => f.StartsWith(activeDirectory, StringComparison.Ordinal)).ToList();
            looks.Add(new DeliveryAgentLook(agent.Pid, agent.Command, request, status, waiting, Gone: false, queueFiles));
        }

        return looks;
    }

    /// <summary>The socket inodes the stopped queue managers hold (fixed while they are stopped).</summary>
    public static HashSet<ulong> SocketsOf(IEnumerable<int> queueManagers)
    {
        var sockets = new HashSet<ulong>();
        foreach (var pid in queueManagers)
        {
            try
            {
                sockets.UnionWith(ProcFs.OpenFiles(pid)?.Sockets ?? []);
            }
            catch (UnauthorizedAccessException ex)
            {
                throw new StorageException(StorageError.Unsupported, $"the agent cannot read /proc/{pid}/fd of Postfix's queue manager ({ex.Message}): holding delivery needs root (CAP_SYS_PTRACE)");
            }
        }

        return sockets;
    }
}
