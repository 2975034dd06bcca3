using System.Net;
using System.Net.Sockets;
using Tidemark.Api;
using Tidemark.Server.Agents;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>
/// An "agent" on 127.0.0.1 that takes the connection and never answers (not even the TLS
/// handshake): a call to it hangs until its caller gives up. <see cref="Accepted"/> completes when
/// the first call arrived.
/// </summary>
internal sealed class SilentAgent : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);

    private SilentAgent()
    {
        _listener.Start();
        Accepted = _listener.AcceptSocketAsync();
    }

    /// <summary>HOST:PORT, as a host is added with.</summary>
    public string Address => $"127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    public Task<Socket> Accepted { get; }

    public static SilentAgent Start() => new();

    /// <summary>Registers it as host <paramref name="name"/> (any fingerprint: it never gets as far as checking one).</summary>
    public void AddTo(HostRegistry hosts, string name, string ownFingerprint) =>
        hosts.Add(new AddHostRequest(name, Address, new string('a', 64)), ownFingerprint);

    public void Dispose() => _listener.Dispose();
}
