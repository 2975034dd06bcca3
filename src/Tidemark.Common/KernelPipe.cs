using System.ComponentModel;
using System.Runtime.InteropServices;

namespace Tidemark;

/// <summary>
/// A Linux pipe used as the hand-over point of splice(2): a frontend moves a WRITE's payload from its
/// socket into the pipe and the engine moves it from the pipe into the store file, so the payload's
/// pages never pass through user memory (one kernel copy into the page cache instead of a copy out of
/// the socket plus a copy into the page cache). Owned by one connection; not thread-safe.
/// </summary>
public sealed partial class KernelPipe : IDisposable
{
    private const int OCloexec = 0x80000;
    private const int FSetPipeSize = 1031;
    private const int FGetPipeSize = 1032;
    private const uint FionRead = 0x541B;
    private const uint SpliceMove = 1;
    private const uint SpliceNonBlock = 2;
    private const int Eintr = 4;
    private const int Eagain = 11;

    private int _readFd;
    private int _writeFd;

    private KernelPipe(int readFd, int writeFd, int capacityBytes)
    {
        _readFd = readFd;
        _writeFd = writeFd;
        CapacityBytes = capacityBytes;
    }

    /// <summary>True where splice(2) exists (Linux).</summary>
    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>How many bytes the pipe holds before a splice into it would block.</summary>
    public int CapacityBytes { get; }

    /// <summary>Bytes waiting in the pipe.</summary>
    public int AvailableBytes
    {
        get
        {
            var available = 0;
            Check(IoctlInt(_readFd, FionRead, ref available), "ioctl(FIONREAD) on a pipe");
            return available;
        }
    }

    /// <summary>
    /// Opens a pipe of about <paramref name="capacityBytes"/> (the kernel rounds it to pages and caps
    /// it at /proc/sys/fs/pipe-max-size; <see cref="CapacityBytes"/> says what it granted).
    /// </summary>
    public static KernelPipe Create(int capacityBytes)
    {
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException("splice(2) needs Linux");
        }

        Span<int> fds = stackalloc int[2];
        Check(Pipe2(ref MemoryMarshal.GetReference(fds), OCloexec), "pipe2");
        var granted = Fcntl(fds[1], FSetPipeSize, capacityBytes);
        if (granted < 0)
        {
            // Over pipe-max-size for an unprivileged process: keep the size it has.
            granted = Fcntl(fds[1], FGetPipeSize, 0);
        }

        if (granted <= 0)
        {
            _ = Close(fds[0]);
            _ = Close(fds[1]);
            throw new IOException("cannot size a pipe for splice");
        }

        return new KernelPipe(fds[0], fds[1], granted);
    }

    /// <summary>
    /// Moves up to <paramref name="countBytes"/> from <paramref name="sourceFd"/> (a socket) into the
    /// pipe. Returns the count moved, 0 at end of stream, or -1 when it would block: the pipe is full,
    /// or the source is non-blocking and has nothing yet. (A pipe fills by pages and by the pieces a
    /// socket hands over, so it may be full holding fewer bytes than <see cref="CapacityBytes"/>.)
    /// </summary>
    public int TrySpliceIn(int sourceFd, int countBytes)
    {
        while (true)
        {
            var moved = Splice(sourceFd, IntPtr.Zero, _writeFd, IntPtr.Zero, (nuint)countBytes, SpliceMove | SpliceNonBlock);
            if (moved >= 0)
            {
                return (int)moved;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno == Eagain)
            {
                return -1;
            }

            if (errno != Eintr)
            {
                throw Failure(errno, "splice from the socket");
            }
        }
    }

    /// <summary>
    /// Moves exactly <paramref name="countBytes"/> from the pipe into <paramref name="fileFd"/> at
    /// <paramref name="offsetBytes"/> (the pipe must hold them).
    /// </summary>
    public unsafe void SpliceOut(int fileFd, long offsetBytes, int countBytes)
    {
        var offset = offsetBytes;
        var left = countBytes;
        while (left > 0)
        {
            var moved = Splice(_readFd, IntPtr.Zero, fileFd, (IntPtr)(&offset), (nuint)left, SpliceMove);
            if (moved > 0)
            {
                left -= (int)moved;
                continue;
            }

            var errno = moved == 0 ? 0 : Marshal.GetLastPInvokeError();
            if (errno == Eintr)
            {
                continue;
            }

            throw moved == 0 ? new IOException($"the pipe ran dry with {left} of {countBytes} bytes still to write") : Failure(errno, "splice into the store");
        }
    }

    /// <summary>Reads exactly <paramref name="destination"/>'s length out of the pipe (it must hold that much).</summary>
    public void Read(Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            var n = ReadFd(_readFd, ref MemoryMarshal.GetReference(destination), (nuint)destination.Length);
            if (n > 0)
            {
                destination = destination[(int)n..];
                continue;
            }

            var errno = n == 0 ? 0 : Marshal.GetLastPInvokeError();
            if (errno != Eintr)
            {
                throw n == 0 ? new IOException("the pipe ran dry") : Failure(errno, "read from a pipe");
            }
        }
    }

    /// <summary>Writes <paramref name="source"/> into the pipe (it must have room); for tests and fallbacks.</summary>
    public void Write(ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            var n = WriteFd(_writeFd, ref MemoryMarshal.GetReference(source), (nuint)source.Length);
            if (n > 0)
            {
                source = source[(int)n..];
                continue;
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno != Eintr)
            {
                throw Failure(errno, "write into a pipe");
            }
        }
    }

    /// <summary>Throws away whatever waits in the pipe (the rest of a payload a failed write did not take).</summary>
    public void Discard()
    {
        Span<byte> scratch = stackalloc byte[4096];
        for (var left = AvailableBytes; left > 0;)
        {
            var n = Math.Min(left, scratch.Length);
            Read(scratch[..n]);
            left -= n;
        }
    }

    public void Dispose()
    {
        if (_readFd >= 0)
        {
            _ = Close(_readFd);
            _ = Close(_writeFd);
            _readFd = _writeFd = -1;
        }
    }

    private static void Check(int result, string what)
    {
        if (result < 0)
        {
            throw Failure(Marshal.GetLastPInvokeError(), what);
        }
    }

    // The errno rides in HResult so callers can tell a full disk (ENOSPC) from other failures.
    private static IOException Failure(int errno, string what) => new($"{what} failed: {new Win32Exception(errno).Message}", errno);

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(ref int fds, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int IoctlInt(int fd, uint request, ref int argument);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    private static partial nint Splice(int fdIn, IntPtr offIn, int fdOut, IntPtr offOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadFd(int fd, ref byte buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteFd(int fd, ref byte buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
