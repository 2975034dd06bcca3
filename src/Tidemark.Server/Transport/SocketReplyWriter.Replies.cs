using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Tidemark.Server;

// IReplySendFeature: a protocol that writes its replies on a thread of its own (NBD's replier) or on
// a thread that must never block (librados's completion thread ending an NBD READ) chooses the send
// here (ADR 0021, "Who sends a read's reply"). The socket stays in blocking mode (the connection
// thread blocks in recv on it); a send that must not wait uses sendmsg(2) with MSG_DONTWAIT.
internal sealed partial class SocketReplyWriter
{
    // At most this many segments per sendmsg (IOV_MAX is 1024); the rest goes with the next call.
    private const int MaxVectors = 64;
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int EAgain = 11;
    private const int EIntr = 4;

    bool IReplySendFeature.SendOnThisThread()
    {
        if (Negotiation is not null)
        {
            throw new InvalidOperationException("replies are sent on the replier's thread only in the data phase");
        }

        return SendQueued(onThisThread: true);
    }

    bool IReplySendFeature.TrySendWithoutBlocking()
    {
        if (Negotiation is not null || _completed)
        {
            return false;
        }

        CutSegment();
        if (_failed)
        {
            return false; // the next flush reports it
        }

        if (_block is not null && _block.Length > BlockPool.SmallBlockBytes)
        {
            Retire(); // as SendQueued: a large reply's block goes back once sent
        }

        lock (_senderLock)
        {
            if (_inFlightBytes > 0 || _senderFailed)
            {
                // Earlier replies wait for the sender thread: these go after them, with the next flush.
                // Only the output's writer hands off, so the sender stays idle once found idle.
                return false;
            }
        }

        while (_queued.Count > 0)
        {
            var sent = SendWithoutBlocking(_queued);
            if (sent < 0)
            {
                _failed = true;
                _queued.Clear();
                ReturnRetired();
                EndConnection();
                return false;
            }

            if (sent == 0)
            {
                return false; // the peer's window is full: the rest (and its blocks) wait for the next flush
            }

            Consume(_queued, sent);
        }

        ReturnRetired();
        return true;
    }

    byte[] IReplySendFeature.RentPayload(int lengthBytes, out int offset)
    {
        var block = BlockPool.Rent(lengthBytes + PageBytes);
        offset = AlignedOffset(block);
        return block;
    }

    void IReplySendFeature.WritePayload(byte[] block, int offset, int lengthBytes)
    {
        if (_completed)
        {
            BlockPool.Return(block);
            throw new ObjectDisposedException(nameof(SocketReplyWriter));
        }

        // After what the current block holds so far; writing goes on in it behind the payload.
        CutSegment();
        _queued.Add(new ArraySegment<byte>(block, offset, lengthBytes));
        _retired.Add(block);
    }

    void IReplySendFeature.ReturnPayload(byte[] block) => BlockPool.Return(block);

    /// <summary>Queues what was written into the current block since its last segment, and goes on writing after it.</summary>
    private void CutSegment()
    {
        if (_block is not null && _position > _segmentStart)
        {
            _queued.Add(new ArraySegment<byte>(_block, _segmentStart, _position - _segmentStart));
            _segmentStart = _position;
        }
    }

    /// <summary>
    /// One sendmsg of the first segments with MSG_DONTWAIT: the bytes sent, 0 when the socket's buffer
    /// is full, -1 when the connection failed. Every segment lies in a pinned block of <see cref="BlockPool"/>.
    /// </summary>
    private unsafe int SendWithoutBlocking(List<ArraySegment<byte>> queue)
    {
        var count = Math.Min(queue.Count, MaxVectors);
        var vectors = stackalloc IoVector[count];
        for (var i = 0; i < count; i++)
        {
            var segment = queue[i];
            var start = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(segment.Array!));
            vectors[i] = new IoVector((nint)(start + segment.Offset), (nuint)segment.Count);
        }

        var message = new MessageHeader { Vectors = (nint)vectors, VectorCount = (nuint)count };
        var handle = socket.SafeHandle;
        var added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            var fd = (int)handle.DangerousGetHandle();
            while (true)
            {
                var sent = SendMessage(fd, &message, MsgDontWait | MsgNoSignal);
                if (sent >= 0)
                {
                    return (int)sent;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno == EAgain)
                {
                    return 0;
                }

                if (errno != EIntr)
                {
                    return -1;
                }
            }
        }
        catch (ObjectDisposedException)
        {
            return -1; // the socket was closed under us
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private readonly struct IoVector(nint start, nuint length)
    {
        public readonly nint Start = start;
        public readonly nuint Length = length;
    }

    /// <summary>struct msghdr (LP64: the 32-bit name length is padded to 8 bytes by sequential layout).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct MessageHeader
    {
        public nint Name;
        public uint NameLength;
        public nint Vectors;
        public nuint VectorCount;
        public nint Control;
        public nuint ControlLength;
        public int Flags;
    }

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    private static unsafe partial nint SendMessage(int fd, MessageHeader* message, int flags);
}
