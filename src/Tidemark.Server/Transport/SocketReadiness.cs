using System.Collections.Concurrent;
using System.ComponentModel;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Tidemark.Server;

/// <summary>
/// Waits for sockets in their negotiation phase (NBD handshake, iSCSI login) to become readable or
/// writable without a thread per socket: one process-wide thread in epoll_wait(2) completes the
/// waiting tasks, whose continuations run on the thread pool.
/// </summary>
/// <remarks>
/// <para>
/// Why not the runtime's own asynchronous socket calls: the first one switches the socket to
/// non-blocking mode for good, and every blocking call after it is then emulated through the
/// runtime's epoll thread (one more wake-up per request), which is exactly the hop the data path
/// avoids (DESIGN.md, data-path performance). Here the socket stays in blocking mode: a read is
/// issued only once epoll said it will not block, and a send uses MSG_DONTWAIT. When the
/// connection enters its data phase it leaves this epoll set and its thread blocks in recv as before.
/// </para>
/// <para>
/// Each socket is registered with EPOLLONESHOT, so a readiness report disarms it until the next
/// wait rearms it: one report per wait, and no report for a socket nobody waits on.
/// </para>
/// </remarks>
internal sealed partial class SocketReadiness
{
    private const int EpollCtlAdd = 1;
    private const int EpollCtlDel = 2;
    private const int EpollCtlMod = 3;
    private const uint EpollIn = 0x001;
    private const uint EpollOut = 0x004;
    private const uint EpollErr = 0x008;
    private const uint EpollHup = 0x010;
    private const uint EpollRdHup = 0x2000;
    private const uint EpollOneShot = 1u << 30;
    private const int EpollCloExec = 0x80000;
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int EAgain = 11;
    private const int EIntr = 4;

    private static readonly Lazy<SocketReadiness?> SharedInstance = new(Create);

    // x86-64 packs struct epoll_event (12 bytes, data at offset 4); other 64-bit ABIs align it (16, 8).
    private static readonly int EventBytes = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    private static readonly int DataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    private readonly int _epoll;
    private readonly ConcurrentDictionary<long, Registration> _registrations = new();
    private long _nextId;

    private SocketReadiness(int epoll)
    {
        _epoll = epoll;
        var thread = new Thread(Run) { IsBackground = true, Name = "negotiation poller" };
        thread.Start();
    }

    /// <summary>The process's poller; null where epoll is not available (connections then get a thread from accept, as before).</summary>
    public static SocketReadiness? Shared => SharedInstance.Value;

    /// <summary>Sockets registered now (connections in their negotiation phase).</summary>
    public int Registered => _registrations.Count;

    /// <summary>Starts watching a socket; dispose the registration when the negotiation phase ends.</summary>
    public Registration Register(Socket socket) => new(this, socket, Interlocked.Increment(ref _nextId));

    private static SocketReadiness? Create()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        var epoll = EpollCreate1(EpollCloExec);
        return epoll < 0 ? null : new SocketReadiness(epoll);
    }

    private unsafe void Run()
    {
        const int batch = 256;
        var events = stackalloc byte[batch * EventBytes];
        while (true)
        {
            var count = EpollWait(_epoll, events, batch, -1);
            if (count < 0)
            {
                if (Marshal.GetLastPInvokeError() == EIntr)
                {
                    continue;
                }

                // Nothing sensible remains to be done with a broken epoll set; the waits then end
                // by their deadlines, which shut their sockets down.
                return;
            }

            for (var i = 0; i < count; i++)
            {
                var id = *(long*)(events + (i * EventBytes) + DataOffset);
                if (_registrations.TryGetValue(id, out var registration))
                {
                    registration.Signal();
                }
            }
        }
    }

    private unsafe int Control(int operation, int fd, uint mask, long id)
    {
        var ev = stackalloc byte[16];
        *(uint*)ev = mask;
        *(long*)(ev + DataOffset) = id;
        return EpollCtl(_epoll, operation, fd, ev) < 0 ? Marshal.GetLastPInvokeError() : 0;
    }

    /// <summary>One socket in the epoll set: one wait at a time (the protocols read and write in turn while negotiating).</summary>
    internal sealed class Registration : IDisposable
    {
        private readonly SocketReadiness _owner;
        private readonly Socket _socket;
        private readonly long _id;
        private readonly int _fd;
        private bool _added;
        private bool _disposed;
        private TaskCompletionSource? _waiter;

        internal Registration(SocketReadiness owner, Socket socket, long id)
        {
            _owner = owner;
            _socket = socket;
            _id = id;
            _fd = (int)socket.Handle;
            owner._registrations[id] = this;
        }

        /// <summary>Completes once the socket can be read without blocking (data, end of stream or an error).</summary>
        public Task WaitReadableAsync() => WaitAsync(EpollIn | EpollRdHup);

        /// <summary>
        /// Sends what the socket takes now without blocking, waiting for room in between; a peer that
        /// never reads leaves this waiting (not a thread) until the connection's deadline shuts it down.
        /// </summary>
        public async ValueTask SendAsync(ReadOnlyMemory<byte> data)
        {
            while (!data.IsEmpty)
            {
                var sent = TrySend(data.Span);
                if (sent > 0)
                {
                    data = data[sent..];
                    continue;
                }

                await WaitAsync(EpollOut);
            }
        }

        public void Dispose()
        {
            lock (this)
            {
                if (_disposed)
                {
                    return;
                }

                _disposed = true;
                if (_added)
                {
                    // Before the socket closes (the fd number may be reused at once). A failure
                    // (ENOENT) means it left the set already; either way it is out.
                    _ = _owner.Control(EpollCtlDel, _fd, 0, _id);
                }

                _owner._registrations.TryRemove(_id, out _);
                _waiter?.TrySetException(new ObjectDisposedException(nameof(Socket), "the connection ended while it waited"));
                _waiter = null;
            }
        }

        internal void Signal()
        {
            TaskCompletionSource? waiter;
            lock (this)
            {
                waiter = _waiter;
                _waiter = null;
            }

            waiter?.TrySetResult();
        }

        /// <summary>Bytes sent, 0 when the socket's buffer is full; throws when the connection failed.</summary>
        private unsafe int TrySend(ReadOnlySpan<byte> data)
        {
            ObjectDisposedException.ThrowIf(_disposed, _socket);
            fixed (byte* p = data)
            {
                var sent = Send(_fd, p, data.Length, MsgDontWait | MsgNoSignal);
                if (sent >= 0)
                {
                    return (int)sent;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno == EAgain || errno == EIntr)
                {
                    return 0;
                }

                throw new IOException($"send failed: {new Win32Exception(errno).Message}", new SocketException(errno));
            }
        }

        private Task WaitAsync(uint mask)
        {
            lock (this)
            {
                ObjectDisposedException.ThrowIf(_disposed, _socket);
                if (_waiter is not null)
                {
                    throw new InvalidOperationException("a negotiating connection waits for one thing at a time");
                }

                var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiter = waiter;
                var error = _owner.Control(_added ? EpollCtlMod : EpollCtlAdd, _fd, mask | EpollErr | EpollHup | EpollOneShot, _id);
                if (error != 0)
                {
                    _waiter = null;
                    throw new IOException($"cannot wait for the connection: {new Win32Exception(error).Message}");
                }

                _added = true;
                return waiter.Task;
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int EpollCreate1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static unsafe partial int EpollCtl(int epoll, int operation, int fd, byte* ev);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static unsafe partial int EpollWait(int epoll, byte* events, int maxEvents, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static unsafe partial nint Send(int fd, byte* buffer, nint length, int flags);
}
