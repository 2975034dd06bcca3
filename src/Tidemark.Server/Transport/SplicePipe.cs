using System.Buffers;
using System.ComponentModel;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Tidemark.Server;

/// <summary>
/// A Linux pipe as the hand-over point of splice(2) for one connection's WRITE payloads: the
/// transport moves a payload socket -> pipe (the socket's pages are handed over, not copied) and
/// pipe -> store file (one copy, into the page cache), where a receive into memory and a pwrite
/// out of it copied twice. Owned by <see cref="SocketInput"/>, created on the first payload that
/// uses it and closed with the connection; not thread-safe.
/// </summary>
/// <remarks>
/// What commit 0e0e6ff's KernelPipe learned, kept here: a pipe fills by the pieces a socket hands
/// over, possibly before its byte capacity, so the splice into it is non-blocking on the pipe side
/// (this thread is also the pipe's reader: a blocking splice into a full pipe would wait forever),
/// and a full pipe is emptied before more is taken. The socket side of that splice blocks (the
/// socket is in blocking mode, and SPLICE_F_NONBLOCK does not reach it), so the caller splices only
/// once poll(2) said the socket is readable, and that wait carries the payload's deadline.
/// </remarks>
internal sealed partial class SplicePipe : IDisposable
{
    private const int OCloexec = 0x80000;
    private const int FSetPipeSize = 1031;
    private const int FGetPipeSize = 1032;
    private const uint SpliceMove = 1;
    private const uint SpliceNonBlock = 2;
    private const int Eintr = 4;
    private const int Eagain = 11;
    private const int Einval = 22;

    private int _readFd;
    private int _writeFd;

    private SplicePipe(int readFd, int writeFd, int capacityBytes)
    {
        _readFd = readFd;
        _writeFd = writeFd;
        CapacityBytes = capacityBytes;
    }

    /// <summary>True where splice(2) exists (Linux).</summary>
    public static bool IsSupported => OperatingSystem.IsLinux();

    /// <summary>What the kernel granted: how much a payload may have in the pipe at once.</summary>
    public int CapacityBytes { get; }

    /// <summary>
    /// Opens a pipe of about <paramref name="capacityBytes"/>. The kernel rounds it to pages and caps it
    /// at /proc/sys/fs/pipe-max-size, and a user over pipe-user-pages-soft gets a small one; a pipe
    /// keeps what it was given then (smaller pipes mean more, smaller splices, not failures).
    /// </summary>
    public static SplicePipe Create(int capacityBytes)
    {
        if (!IsSupported)
        {
            throw new PlatformNotSupportedException("splice(2) needs Linux");
        }

        Span<int> fds = stackalloc int[2];
        if (Pipe2(ref MemoryMarshal.GetReference(fds), OCloexec) != 0)
        {
            throw Failure(Marshal.GetLastPInvokeError(), "pipe2");
        }

        var granted = Fcntl(fds[1], FSetPipeSize, capacityBytes);
        if (granted < 0)
        {
            granted = Fcntl(fds[1], FGetPipeSize, 0);
        }

        if (granted <= 0)
        {
            _ = Close(fds[0]);
            _ = Close(fds[1]);
            throw new IOException("cannot size a pipe for splice");
        }

        return new SplicePipe(fds[0], fds[1], granted);
    }

    /// <summary>
    /// Moves up to <paramref name="countBytes"/> from <paramref name="socket"/> into the pipe: the
    /// count moved, 0 at the socket's end of stream, or -1 when it would block (the pipe is full, or
    /// nothing is there yet). Call it only when the socket is readable (see remarks).
    /// </summary>
    public int TrySpliceIn(SafeHandle socket, int countBytes)
    {
        var added = false;
        try
        {
            socket.DangerousAddRef(ref added);
            var fd = (int)socket.DangerousGetHandle();
            while (true)
            {
                var moved = Splice(fd, IntPtr.Zero, _writeFd, IntPtr.Zero, (nuint)countBytes, SpliceMove | SpliceNonBlock);
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
                    throw new PayloadSourceException($"splice from the connection's socket failed: {new Win32Exception(errno).Message}", Failure(errno, "splice"));
                }
            }
        }
        finally
        {
            if (added)
            {
                socket.DangerousRelease();
            }
        }
    }

    /// <summary>
    /// Moves up to <paramref name="countBytes"/> (which the pipe holds) into <paramref name="file"/>
    /// at <paramref name="offsetBytes"/>; returns how many moved (at least one), or 0 when the file
    /// takes no splice (EINVAL: the caller copies instead). Blocks on the file side only. A failure is
    /// an <see cref="IOException"/> with the errno as its HResult (ENOSPC: the file system is full).
    /// </summary>
    public unsafe int SpliceOut(SafeHandle file, long offsetBytes, int countBytes)
    {
        var added = false;
        try
        {
            file.DangerousAddRef(ref added);
            var fd = (int)file.DangerousGetHandle();
            var offset = offsetBytes;
            while (true)
            {
                var moved = Splice(_readFd, IntPtr.Zero, fd, (IntPtr)(&offset), (nuint)countBytes, SpliceMove);
                if (moved > 0)
                {
                    return (int)moved;
                }

                var errno = moved == 0 ? 0 : Marshal.GetLastPInvokeError();
                if (errno == Eintr)
                {
                    continue;
                }

                if (errno == Einval)
                {
                    return 0;
                }

                throw moved == 0 ? new IOException($"the pipe ran dry with {countBytes} bytes still to write") : Failure(errno, "splice into the store");
            }
        }
        finally
        {
            if (added)
            {
                file.DangerousRelease();
            }
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

    /// <summary>
    /// Moves the pipe's next <paramref name="lengthBytes"/> (which it holds) into <paramref name="file"/>
    /// through memory: for a file that takes no splice (<see cref="SpliceOut"/> returned 0). They are
    /// out of the pipe before the write, so a failed write leaves nothing of them there.
    /// </summary>
    public void CopyOut(SafeFileHandle file, long offsetBytes, int lengthBytes)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(lengthBytes);
        try
        {
            Read(buffer.AsSpan(0, lengthBytes));
            RandomAccess.Write(file, buffer.AsSpan(0, lengthBytes), offsetBytes);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Writes <paramref name="source"/> into the pipe (bytes the connection had received into memory
    /// before a payload's splice: they go first so the pipe holds the payload in order). The caller
    /// knows the pipe has room (it is empty and the bytes are at most its capacity): a full pipe
    /// would block this thread, the pipe's only reader.
    /// </summary>
    public void Write(ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            var n = WriteFd(_writeFd, in MemoryMarshal.GetReference(source), (nuint)source.Length);
            if (n > 0)
            {
                source = source[(int)n..];
                continue;
            }

            var errno = n == 0 ? 0 : Marshal.GetLastPInvokeError();
            if (errno != Eintr)
            {
                throw Failure(errno, "write into a pipe");
            }
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

    // The errno rides in HResult so the store can tell a full disk (ENOSPC) from other failures.
    private static IOException Failure(int errno, string what) => new($"{what} failed: {new Win32Exception(errno).Message}", errno);

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(ref int fds, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    private static partial nint Splice(int fdIn, IntPtr offIn, int fdOut, IntPtr offOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static partial nint ReadFd(int fd, ref byte buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static partial nint WriteFd(int fd, in byte buffer, nuint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
