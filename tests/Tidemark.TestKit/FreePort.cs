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

    /// <summary>
    /// A TCP port nothing listens on now, for a server that must bind it again after a restart (a
    /// replication partner's address is stored by the other side), or for an address that must stay
    /// closed while a test runs (an agent that is down). It lies outside the kernel's
    /// ephemeral range (net.ipv4.ip_local_port_range), from which every bind to port 0 and every
    /// outgoing connection of every process on the machine takes its port: a port from
    /// <see cref="Find"/> was taken by another test's connection between a stop and a restart.
    /// </summary>
    public static int FindStable()
    {
        var (low, high) = EphemeralRange();
        var (from, to) = low - 10_000 >= 1024 ? (low - 10_000, low) : (high + 1, 65_536);
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var port = Random.Shared.Next(from, to);
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // In use: another test (or another copy of the suite) has it; try another.
            }
        }

        throw new InvalidOperationException($"no free TCP port found in {from}-{to - 1} after 200 tries");
    }

    private static (int Low, int High) EphemeralRange()
    {
        try
        {
            var parts = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return (int.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
        }
        catch (IOException)
        {
            return (32_768, 60_999); // Linux's default
        }
    }
}
