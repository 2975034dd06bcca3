using System.Net;
using System.Net.Sockets;

namespace Tidemark.TestKit;

public static class FreePort
{
    /// <summary>A TCP port nothing listens on now (the kernel's choice for port 0).</summary>
    public static int Find()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
