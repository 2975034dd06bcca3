using System.Runtime.InteropServices;

namespace Tidemark.Agent;

/// <summary>
/// FIFREEZE / FITHAW (linux/fs.h) on a mount point's directory descriptor, as fsfreeze(8) does: the
/// kernel syncs the file system, blocks new writes and page faults that would dirty it, and for a
/// journalled file system (ext4, xfs) commits the journal so that the image on the device needs no
/// recovery. Needs CAP_SYS_ADMIN.
/// </summary>
public sealed partial class FileSystemFreeze : IDisposable
{
    // _IOWR('X', 119, int) and _IOWR('X', 120, int).
    private const ulong FiFreeze = 0xC0045877;
    private const ulong FiThaw = 0xC0045878;
    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;
    private const int OCloexec = 0x80000;
    private const int EPerm = 1;
    private const int EInval = 22;
    private const int EBusy = 16;
    private const int EOpNotSupp = 95;

    private readonly Lock _lock = new();
    private int _fd;
    private bool _frozen;

    private FileSystemFreeze(string path, int fd)
    {
        Path = path;
        _fd = fd;
    }

    public string Path { get; }

    /// <summary>Freezes the file system mounted at <paramref name="path"/>; throws with the reason and what to do.</summary>
    public static FileSystemFreeze Freeze(string path)
    {
        var fd = Open(path, ORdOnly | ODirectory | OCloexec);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new StorageException(StorageError.NotFound, $"cannot open mount point {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }

        var freeze = new FileSystemFreeze(path, fd);
        if (Ioctl(fd, FiFreeze, 0) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            freeze.Dispose();
            throw errno switch
            {
                EBusy => new StorageException(StorageError.Busy, $"{path} is already frozen (by fsfreeze or another quiesce); thaw it ('fsfreeze -u {path}') or wait for the other snapshot"),
                EPerm => new StorageException(StorageError.Unsupported, $"freezing {path} needs CAP_SYS_ADMIN: run the agent as root"),
                EOpNotSupp => new StorageException(StorageError.Unsupported, $"the file system at {path} cannot be frozen (FIFREEZE unsupported); use a scripts hook for it"),
                _ => new StorageException(StorageError.IoError, $"FIFREEZE on {path} failed: {Marshal.GetPInvokeErrorMessage(errno)}"),
            };
        }

        freeze._frozen = true;
        return freeze;
    }

    /// <summary>
    /// Thaws the file system at <paramref name="path"/> that a previous run of the agent froze and
    /// never thawed (it was killed): true when it was frozen and is thawed now, false when it was not frozen.
    /// </summary>
    public static bool ThawLeftover(string path)
    {
        var fd = Open(path, ORdOnly | ODirectory | OCloexec);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new StorageException(StorageError.NotFound, $"cannot open mount point {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
        }

        using var freeze = new FileSystemFreeze(path, fd) { _frozen = true };
        return freeze.Thaw();
    }

    /// <summary>Thaws once; false when the file system was no longer frozen (someone ran fsfreeze -u).</summary>
    public bool Thaw()
    {
        lock (_lock)
        {
            if (!_frozen)
            {
                return false;
            }

            _frozen = false;
            if (Ioctl(_fd, FiThaw, 0) == 0)
            {
                return true;
            }

            var errno = Marshal.GetLastPInvokeError();
            return errno == EInval
                ? false
                : throw new StorageException(StorageError.IoError, $"FITHAW on {Path} failed: {Marshal.GetPInvokeErrorMessage(errno)}; run 'fsfreeze -u {Path}'");
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_fd >= 0)
            {
                _ = Close(_fd);
                _fd = -1;
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, ulong request, nint argument);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
