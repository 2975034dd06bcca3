namespace Tidemark.Server;

/// <summary>
/// What one block-protocol listener (NBD, iSCSI) allows its clients: the listener-level policy of
/// docs/adr/0006-connection-limits.md, applied in <see cref="ConnectionAdmission"/> and
/// <see cref="ProtocolListener"/> only.
/// </summary>
public sealed record ConnectionLimits
{
    public const int DefaultMaxConnections = 4096;
    public const int DefaultMaxConnectionsPerSource = 256;
    public static readonly TimeSpan DefaultHandshakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>A client that has taken none of its replies for a minute is gone or stuck; a slow but live one takes some within that.</summary>
    public static readonly TimeSpan DefaultSendTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Thirty seconds: a 1 MiB piece at 35 KB/s; a live client on a LAN sends one in milliseconds.</summary>
    public static readonly TimeSpan DefaultPayloadTimeout = TimeSpan.FromSeconds(30);

    /// <summary>How long a connection may take from accept to the end of its NBD handshake or iSCSI login; it is closed then.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = DefaultHandshakeTimeout;

    /// <summary>
    /// How long a connection in its data phase may send nothing before it is closed; zero keeps it
    /// forever (the default: an NBD client may rightly sit idle for hours, and iSCSI has its own
    /// NOP-In keepalive that finds dead initiators).
    /// </summary>
    public TimeSpan IdleTimeout { get; init; }

    /// <summary>
    /// How long a connection in its data phase may have replies waiting to be sent while its client
    /// takes none of them before it is closed (SO_SNDTIMEO; zero: never). A client that stops reading
    /// (or half-closes) would otherwise hold a thread, its buffered replies and its slot for good.
    /// </summary>
    public TimeSpan SendTimeout { get; init; } = DefaultSendTimeout;

    /// <summary>
    /// How long each piece (at most 1 MiB) of a WRITE payload that the device pulls from the socket
    /// itself (the payload source: splice into the store, docs/adr/0010-protocol-transport.md) may
    /// take to arrive; past it the connection is closed (zero: never). A piece is staged in the
    /// connection's pipe before the write takes the region locks of its range, but a pipe can fill
    /// before its byte capacity, and then the rest arrives while the locks are held (other I/O to the
    /// range waits, and so does a snapshot of the volume): a peer that trickles must not hold them long.
    /// </summary>
    public TimeSpan PayloadTimeout { get; init; } = DefaultPayloadTimeout;

    /// <summary>Connections open at once on the listener, negotiating or serving.</summary>
    public int MaxConnections { get; init; } = DefaultMaxConnections;

    /// <summary>Connections open at once from one IP address (a Unix-domain socket's clients are not counted per source: only the server's user reaches it).</summary>
    public int MaxConnectionsPerSource { get; init; } = DefaultMaxConnectionsPerSource;
}
