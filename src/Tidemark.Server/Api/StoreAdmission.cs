using Microsoft.Win32.SafeHandles;
using Tidemark.Api;

namespace Tidemark.Server.Api;

/// <summary>
/// Checks the path of a store added through the API before the engine touches it. A relative path
/// lives under the data directory (never the server's working directory, never outside through
/// "../" or a symbolic link); a new file store must not exist yet; an existing path must be a block
/// device, not a kernel interface (/proc, /sys), a character device or a directory; and a device
/// that holds a file system, partition table or volume-manager signature is refused unless forced.
/// Every refusal is a <see cref="StorageException"/>, so the client gets a 4xx problem, never a 500.
/// </summary>
public static class StoreAdmission
{
    public const int MaxPathChars = 4096;

    /// <summary>The full path to give the engine.</summary>
    public static string Check(string path, string dataRoot, bool force)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw Invalid("the store path is empty; give a file to create (a relative path is under the data directory) or a block device such as /dev/sdb");
        }

        if (path.Length > MaxPathChars || path.Contains('\0', StringComparison.Ordinal))
        {
            throw Invalid($"the store path is not a usable path (longer than {MaxPathChars} characters, or with a NUL byte)");
        }

        if (Tidemark.Engine.Storage.RadosLocation.IsRados(path))
        {
            // Objects in a Ceph cluster, not a local path: only the location's form is checked here;
            // the engine connects, takes the store's lock and refuses a store that is not empty.
            return Tidemark.Engine.Storage.RadosLocation.Parse(path).ToString();
        }

        var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(dataRoot));
        var rooted = Path.IsPathRooted(path);
        var full = Path.GetFullPath(rooted ? path : Path.Combine(root, path));
        if (!rooted)
        {
            if (!full.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            {
                throw Invalid($"'{path}' leads outside the data directory {root}; relative store paths stay under it (give an absolute path to put a store elsewhere)");
            }

            ThrowIfThroughLink(root, full, path);
        }

        var resolved = File.Exists(full) && new FileInfo(full).LinkTarget is not null
            ? new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full
            : full;
        if (IsUnder(resolved, "/proc") || IsUnder(resolved, "/sys"))
        {
            throw Invalid($"{path} is a kernel interface, not storage; give a file to create or a block device");
        }

        if (Directory.Exists(resolved))
        {
            throw Invalid($"{path} is a directory; give a file name to create in it, or a block device");
        }

        if (!File.Exists(resolved))
        {
            if (IsUnder(resolved, "/dev"))
            {
                throw Invalid($"{path} does not exist; a device must exist ('lsblk' lists them)");
            }

            var parent = Path.GetDirectoryName(resolved);
            if (parent is null || !Directory.Exists(parent))
            {
                throw Invalid($"the directory {parent} does not exist; create it first");
            }

            return full;
        }

        if (!IsBlockDevice(resolved))
        {
            throw new StorageException(StorageError.AlreadyExists, IsUnder(resolved, "/dev")
                ? $"{path} is not a block device (only regular files that Tidemark creates, and block devices, can be stores)"
                : $"{path} exists; a file store is a new file that Tidemark creates (choose a name that does not exist), or give a block device");
        }

        if (!force && Probe(resolved, path) is { } found)
        {
            throw new StorageException(StorageError.Busy, $"{path} holds {found}; refusing to overwrite it. If nothing on it is needed, add the store with force (--force), after wiping it (wipefs -a)");
        }

        return full;
    }

    /// <summary>Linux lists every block device in /sys/class/block; a character device (/dev/null, /dev/zero) is not there.</summary>
    public static bool IsBlockDevice(string path) =>
        OperatingSystem.IsLinux() && IsUnder(path, "/dev") && Directory.Exists(Path.Combine("/sys/class/block", Path.GetFileName(path)));

    private static string? Probe(string device, string shown)
    {
        try
        {
            using SafeFileHandle handle = File.OpenHandle(device, FileMode.Open, FileAccess.Read);
            var buffer = new byte[DiskSignatures.ProbeBytes];
            var read = 0;
            while (read < buffer.Length)
            {
                var n = RandomAccess.Read(handle, buffer.AsSpan(read), read);
                if (n == 0)
                {
                    break;
                }

                read += n;
            }

            return DiskSignatures.Detect(buffer.AsSpan(0, read));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw Invalid($"cannot read {shown} to check what it holds ({ex.Message}); the server's user needs read and write access to it");
        }
    }

    private static void ThrowIfThroughLink(string root, string full, string shown)
    {
        // A symbolic link inside the data directory could lead anywhere; relative paths may not pass one.
        var current = root;
        foreach (var part in Path.GetRelativePath(root, full).Split(Path.DirectorySeparatorChar))
        {
            current = Path.Combine(current, part);
            if ((File.Exists(current) || Directory.Exists(current)) && new FileInfo(current).LinkTarget is not null)
            {
                throw Invalid($"'{shown}' passes the symbolic link {current}; relative store paths must stay inside the data directory (give an absolute path instead)");
            }
        }
    }

    private static bool IsUnder(string path, string directory) =>
        path == directory || path.StartsWith(directory + "/", StringComparison.Ordinal);

    private static StorageException Invalid(string message) => new(StorageError.InvalidArgument, message);
}
