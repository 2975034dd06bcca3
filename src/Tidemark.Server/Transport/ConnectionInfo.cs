using System.Net;

namespace Tidemark.Server;

/// <summary>
/// What a protocol connection learns about its connection besides its bytes, in Kestrel's shape:
/// the socket stays inside the transport (<see cref="ProtocolListener"/>, <see cref="SocketInput"/>,
/// <see cref="SocketReplyWriter"/>); its addresses and the way to end it are features of the
/// connection (docs/adr/0010-protocol-transport.md). TLS is not here: NBD negotiates it inside its
/// own protocol (STARTTLS, <see cref="PipeTls"/>), and iSCSI has none.
/// </summary>
public sealed class ConnectionInfo(EndPoint? remoteEndPoint, EndPoint? localEndPoint, Action abort)
{
    /// <summary>The client's address (for a Unix-domain socket, the socket's path).</summary>
    public EndPoint? RemoteEndPoint { get; } = remoteEndPoint;

    /// <summary>The address the client reached (an iSCSI portal reports it in SendTargets).</summary>
    public EndPoint? LocalEndPoint { get; } = localEndPoint;

    /// <summary>
    /// Ends the connection from any thread (rollback's forced close): a blocked receive and a send
    /// blocked on a peer that stopped reading both return, and the protocol's loop ends.
    /// </summary>
    public void Abort() => abort();
}
