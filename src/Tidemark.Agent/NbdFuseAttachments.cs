using System.Net;
using Tidemark.Api;

namespace Tidemark.Agent;

/// <summary>
/// Volumes attached through nbdfuse (+ a loop device), found without a declaration in the agent's
/// config (issue 19: the agent knows which mounts sit on which volumes "by NBD or iSCSI attachment, or
/// declared"). nbdfuse shows a remote NBD export as a file, a loop device makes it a block device,
/// and a file system is mounted from that: /sys/block/loopN/loop/backing_file names the file, and the
/// nbdfuse process serving it has the export's URI on its command line (`nbdfuse MOUNTPOINT[/FILENAME]
/// URI`). The server sends the URLs it exports the cut's volumes under (<see cref="QuiesceRequest.Attachments"/>),
/// so the agent maps such a mount to its volume by the URI: the export name, and the port and host
/// (or the Unix socket). nbdfuse's other modes (--tcp, --unix, --fd, a subprocess) name no export and
/// are left to declarations; kernel NBD (/sys/block/nbdN) and iSCSI sessions are not handled (neither
/// exists on the machines this was built and tested on).
/// </summary>
public static class NbdFuseAttachments
{
    /// <summary>nbdfuse's options that take a value as the next argument.</summary>
    private static readonly HashSet<string> OptionsWithValue = new(StringComparer.Ordinal) { "-C", "--connections", "-o", "--fuse-option", "-P", "--pidfile" };

    /// <summary>
    /// The NBD URI of each file an nbdfuse process serves, by the file's absolute path: for a process
    /// started with MOUNTPOINT[/FILENAME] URI, both the path given and PATH/nbd (which of them is the
    /// file depends on whether PATH was a directory when nbdfuse started; only one can be a loop's
    /// backing file). Processes that went away or cannot be read are skipped.
    /// </summary>
    public static IReadOnlyDictionary<string, string> Discover(string procRoot = "/proc")
    {
        var found = new Dictionary<string, string>(StringComparer.Ordinal);
        IEnumerable<string> processes;
        try
        {
            processes = Directory.EnumerateDirectories(procRoot);
        }
        catch (IOException)
        {
            return found;
        }

        foreach (var directory in processes)
        {
            if (!int.TryParse(Path.GetFileName(directory), out _))
            {
                continue;
            }

            try
            {
                var arguments = File.ReadAllText(Path.Combine(directory, "cmdline")).Split('\0', StringSplitOptions.None);
                if (arguments.Length < 3 || Path.GetFileName(arguments[0]) != "nbdfuse" || Parse(arguments) is not { } parsed)
                {
                    continue;
                }

                var path = parsed.Path;
                if (!Path.IsPathRooted(path))
                {
                    // Relative to where nbdfuse was started: its working directory.
                    var cwd = new FileInfo(Path.Combine(directory, "cwd")).LinkTarget;
                    if (cwd is null)
                    {
                        continue;
                    }

                    path = Path.GetFullPath(path, cwd);
                }

                path = LocalMounts.Normalize(Path.GetFullPath(path));
                found[path] = parsed.Uri;
                found[Path.Combine(path, "nbd")] = parsed.Uri;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The process ended meanwhile, or is not ours to read.
            }
        }

        return found;
    }

    /// <summary>MOUNTPOINT[/FILENAME] and the URI of an nbdfuse command line (argv, argv[0] first), or null for its other modes.</summary>
    public static (string Path, string Uri)? Parse(IReadOnlyList<string> arguments)
    {
        var positional = new List<string>(2);
        for (var i = 1; i < arguments.Count && positional.Count < 2; i++)
        {
            var argument = arguments[i];
            if (positional.Count == 0 && argument.StartsWith('-'))
            {
                if (OptionsWithValue.Contains(argument))
                {
                    i++;
                }

                continue;
            }

            if (positional.Count == 1 && (argument.StartsWith('-') || argument == "["))
            {
                return null; // --command, --tcp, --unix, --fd, --vsock, a subprocess: no export URI
            }

            positional.Add(argument);
        }

        return positional.Count == 2 && positional[1].Length > 0 && IsNbdUri(positional[1]) ? (positional[0], positional[1]) : null;
    }

    /// <summary>
    /// Whether <paramref name="clientUri"/> (what a client was started with) reaches the export at
    /// <paramref name="exportUrl"/> (what the server says it exports under): the same export name, and
    /// for TCP the same port and host (a host the server listens on with a wildcard address matches
    /// any host, and two loopback addresses or "localhost" match each other), for a Unix socket the
    /// same socket path. TLS or not does not matter: the same export either way.
    /// </summary>
    public static bool Matches(string clientUri, string exportUrl)
    {
        if (Describe(clientUri) is not { } client || Describe(exportUrl) is not { } export || client.Name != export.Name)
        {
            return false;
        }

        if (client.Socket is not null || export.Socket is not null)
        {
            return client.Socket is not null && export.Socket is not null
                && LocalMounts.Normalize(Path.GetFullPath(client.Socket)) == LocalMounts.Normalize(Path.GetFullPath(export.Socket));
        }

        return client.Port == export.Port
            && (string.Equals(client.Host, export.Host, StringComparison.OrdinalIgnoreCase)
                || IsWildcard(export.Host)
                || (IsLoopback(client.Host) && IsLoopback(export.Host)));
    }

    /// <summary>
    /// The undeclared mounts among <paramref name="mounts"/> that an nbdfuse attachment puts on one of
    /// <paramref name="attachments"/>' volumes, as mounts of those volumes: what one quiesce adds to
    /// the config's declarations (<see cref="QuiesceScope.Attached"/>). A declaration always wins; a
    /// URI that matches exports of two volumes maps to neither.
    /// </summary>
    public static IReadOnlyList<AgentMountEntry> Attached(IReadOnlyList<AgentMountDto> mounts, IReadOnlyList<VolumeAttachmentDto>? attachments)
    {
        if (attachments is not { Count: > 0 })
        {
            return [];
        }

        var added = new List<AgentMountEntry>();
        foreach (var mount in mounts)
        {
            if (mount.Volume is not null || mount.Attachment is not { } uri)
            {
                continue;
            }

            var volumes = attachments.Where(a => Matches(uri, a.Url)).Select(a => a.Volume).Distinct(StringComparer.Ordinal).ToList();
            if (volumes.Count == 1)
            {
                added.Add(new AgentMountEntry(mount.Path, volumes[0]));
            }
        }

        return added;
    }

    private static bool IsNbdUri(string value) =>
        value.StartsWith("nbd://", StringComparison.OrdinalIgnoreCase) || value.StartsWith("nbds://", StringComparison.OrdinalIgnoreCase)
        || value.StartsWith("nbd+unix://", StringComparison.OrdinalIgnoreCase) || value.StartsWith("nbds+unix://", StringComparison.OrdinalIgnoreCase)
        || value.StartsWith("nbd+tcp://", StringComparison.OrdinalIgnoreCase) || value.StartsWith("nbds+tcp://", StringComparison.OrdinalIgnoreCase);

    /// <summary>The parts of an NBD URI (the NBD URI specification: nbd[s][+unix|+tcp]://[HOST[:PORT]]/[EXPORT][?socket=PATH]).</summary>
    private static (string Name, string Host, int Port, string? Socket)? Describe(string uri)
    {
        if (!IsNbdUri(uri) || !Uri.TryCreate(uri, UriKind.Absolute, out var parsed))
        {
            return null;
        }

        var name = Uri.UnescapeDataString(parsed.AbsolutePath.TrimStart('/'));
        if (parsed.Scheme.EndsWith("+unix", StringComparison.OrdinalIgnoreCase))
        {
            var socket = parsed.Query.TrimStart('?').Split('&')
                .Select(p => p.Split('=', 2))
                .Where(p => p.Length == 2 && p[0] == "socket")
                .Select(p => Uri.UnescapeDataString(p[1]))
                .FirstOrDefault();
            return socket is null ? null : (name, "", 0, socket);
        }

        return (name, parsed.Host.Trim('[', ']'), parsed.IsDefaultPort || parsed.Port < 0 ? 10809 : parsed.Port, null);
    }

    private static bool IsWildcard(string host) => host is "0.0.0.0" or "::" or "*" or "+";

    private static bool IsLoopback(string host) =>
        string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(host, out var address) && IPAddress.IsLoopback(address));
}
