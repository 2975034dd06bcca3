using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace Tidemark.Agent;

/// <summary>One connected unix socket as the kernel reports it: its peer's inode and the bytes in its receive queue, not yet read by its owner.</summary>
internal readonly record struct UnixSocketState(ulong Peer, uint Unread);

/// <summary>
/// The host's unix sockets by inode, with their peer and unread bytes, from the kernel's sock_diag
/// netlink interface (linux/unix_diag.h; what `ss -x` prints), asked directly: one request and a few
/// reads, no process to start. For a stream socket the receive queue is the bytes the peer wrote
/// that this socket's owner has not read yet (unix_inq_len).
/// </summary>
[SupportedOSPlatform("linux")]
internal static partial class UnixSocketDiag
{
    private const int AfNetlink = 16;
    private const int AfUnix = 1;
    private const int SockDgram = 2;
    private const int SockCloexec = 0x80000;
    private const int NetlinkSockDiag = 4;
    private const ushort SockDiagByFamily = 20;
    private const ushort NlmFRequest = 0x1;
    private const ushort NlmFDump = 0x300;
    private const ushort NlmsgError = 2;
    private const ushort NlmsgDone = 3;
    private const uint UdiagShowPeer = 0x4;
    private const uint UdiagShowRqlen = 0x10;
    private const ushort UnixDiagPeer = 2;
    private const ushort UnixDiagRqlen = 4;
    private const int HeaderBytes = 16;
    private const int DiagMessageBytes = 16;

    /// <summary>Every unix socket of the host's network namespace with a peer or unread bytes.</summary>
    public static Dictionary<ulong, UnixSocketState> Dump()
    {
        var fd = Socket(AfNetlink, SockDgram | SockCloexec, NetlinkSockDiag);
        if (fd < 0)
        {
            throw new IOException($"cannot open a sock_diag netlink socket: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }

        try
        {
            // struct nlmsghdr (16 bytes) + struct unix_diag_req (24 bytes): all states, peers and queue lengths.
            Span<byte> request = stackalloc byte[HeaderBytes + 24];
            request.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(request, (uint)request.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(request[4..], SockDiagByFamily);
            BinaryPrimitives.WriteUInt16LittleEndian(request[6..], NlmFRequest | NlmFDump);
            BinaryPrimitives.WriteUInt32LittleEndian(request[8..], 1);
            request[HeaderBytes] = AfUnix;
            BinaryPrimitives.WriteUInt32LittleEndian(request[(HeaderBytes + 4)..], uint.MaxValue);
            BinaryPrimitives.WriteUInt32LittleEndian(request[(HeaderBytes + 12)..], UdiagShowPeer | UdiagShowRqlen);
            if (Send(fd, ref MemoryMarshal.GetReference(request), request.Length, 0) != request.Length)
            {
                throw new IOException($"sock_diag request failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }

            var sockets = new Dictionary<ulong, UnixSocketState>();
            var buffer = new byte[64 * 1024];
            while (true)
            {
                var read = Receive(fd, ref buffer[0], buffer.Length, 0);
                if (read <= 0)
                {
                    throw new IOException($"sock_diag answer failed: {(read < 0 ? Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError()) : "end of stream")}");
                }

                if (Parse(buffer.AsSpan(0, (int)read), sockets))
                {
                    return sockets;
                }
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    /// <summary>
    /// Adds the sockets of one netlink datagram (nlmsghdr + unix_diag_msg + attributes, each padded
    /// to 4 bytes) to <paramref name="sockets"/>; true at NLMSG_DONE. Host byte order, which is little
    /// endian on every architecture the agent runs on (x64, arm64).
    /// </summary>
    public static bool Parse(ReadOnlySpan<byte> datagram, Dictionary<ulong, UnixSocketState> sockets)
    {
        var offset = 0;
        while (offset + HeaderBytes <= datagram.Length)
        {
            var length = (int)BinaryPrimitives.ReadUInt32LittleEndian(datagram[offset..]);
            var type = BinaryPrimitives.ReadUInt16LittleEndian(datagram[(offset + 4)..]);
            if (length < HeaderBytes || offset + length > datagram.Length)
            {
                throw new IOException($"sock_diag message of {length} bytes at {offset} of a {datagram.Length}-byte answer");
            }

            if (type == NlmsgDone)
            {
                return true;
            }

            if (type == NlmsgError)
            {
                var error = length >= HeaderBytes + 4 ? -BinaryPrimitives.ReadInt32LittleEndian(datagram[(offset + HeaderBytes)..]) : 0;
                throw new IOException($"sock_diag answered error {error}: {Marshal.GetPInvokeErrorMessage(error)}");
            }

            if (type == SockDiagByFamily && length >= HeaderBytes + DiagMessageBytes)
            {
                var message = datagram.Slice(offset + HeaderBytes, length - HeaderBytes);
                var inode = BinaryPrimitives.ReadUInt32LittleEndian(message[4..]);
                ulong peer = 0;
                uint unread = 0;
                for (var at = DiagMessageBytes; at + 4 <= message.Length;)
                {
                    var attributeLength = BinaryPrimitives.ReadUInt16LittleEndian(message[at..]);
                    var attributeType = BinaryPrimitives.ReadUInt16LittleEndian(message[(at + 2)..]);
                    if (attributeLength < 4 || at + attributeLength > message.Length)
                    {
                        break;
                    }

                    var value = message.Slice(at + 4, attributeLength - 4);
                    if (attributeType == UnixDiagPeer && value.Length >= 4)
                    {
                        peer = BinaryPrimitives.ReadUInt32LittleEndian(value);
                    }
                    else if (attributeType == UnixDiagRqlen && value.Length >= 8)
                    {
                        unread = BinaryPrimitives.ReadUInt32LittleEndian(value);
                    }

                    at += (attributeLength + 3) & ~3;
                }

                sockets[inode] = new UnixSocketState(peer, unread);
            }

            offset += (length + 3) & ~3;
        }

        return false;
    }

    [LibraryImport("libc", EntryPoint = "socket", SetLastError = true)]
    private static partial int Socket(int domain, int type, int protocol);

    [LibraryImport("libc", EntryPoint = "send", SetLastError = true)]
    private static partial nint Send(int fd, ref byte buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "recv", SetLastError = true)]
    private static partial nint Receive(int fd, ref byte buffer, nint length, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
