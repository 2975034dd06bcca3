using System.Net;
using System.Net.Sockets;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>A connected TCP socket pair on 127.0.0.1 for the transport's tests: <see cref="Server"/> is the accepted side.</summary>
internal sealed class LoopbackPair : IDisposable
{
    public LoopbackPair()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        Client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Client.Connect(listener.LocalEndPoint!);
        Server = listener.Accept();
    }

    public Socket Server { get; }

    public Socket Client { get; }

    public void Dispose()
    {
        Server.Dispose();
        Client.Dispose();
    }
}
