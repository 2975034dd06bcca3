using System.Net.Sockets;

namespace Tidemark;

/// <summary>The accepted socket of a connection as an <see cref="IPayloadSocket"/> (see <see cref="KernelPipe"/>).</summary>
public sealed class SocketPayload(Socket socket) : IPayloadSocket
{
    public bool HasInput
    {
        get
        {
            try
            {
                return socket.Poll(0, SelectMode.SelectRead);
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return true; // the next receive reports it
            }
        }
    }

    public int SpliceSome(KernelPipe pipe, int maxBytes)
    {
        var fd = (int)socket.SafeHandle.DangerousGetHandle();
        try
        {
            while (true)
            {
                var moved = pipe.TrySpliceIn(fd, maxBytes);
                if (moved >= 0)
                {
                    return moved;
                }

                // Would block: with data waiting, only because the pipe is full; otherwise the socket
                // is non-blocking underneath (.NET may set that) and empty, so wait for data.
                if (socket.Poll(0, SelectMode.SelectRead))
                {
                    return -1;
                }

                socket.Poll(-1, SelectMode.SelectRead);
            }
        }
        catch (SocketException ex)
        {
            throw new IOException(ex.Message, ex);
        }
    }

    public bool ReceiveExactly(Span<byte> destination)
    {
        try
        {
            while (!destination.IsEmpty)
            {
                var n = socket.Receive(destination, SocketFlags.None);
                if (n == 0)
                {
                    return false;
                }

                destination = destination[n..];
            }

            return true;
        }
        catch (SocketException ex)
        {
            throw new IOException(ex.Message, ex);
        }
    }
}
