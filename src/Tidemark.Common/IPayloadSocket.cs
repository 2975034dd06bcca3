namespace Tidemark;

/// <summary>
/// The plain socket under a protocol connection, read directly (beside its buffered reader) for the
/// part of a large payload that has not arrived yet, so it can be moved to storage with splice(2).
/// Only for connections without TLS; used by the connection's own thread only.
/// </summary>
public interface IPayloadSocket
{
    /// <summary>
    /// Moves what has arrived of the socket, up to <paramref name="maxBytes"/>, into
    /// <paramref name="pipe"/>, waiting until something has. Returns the count moved, 0 when the peer
    /// closed, or -1 when the pipe is full (the caller empties it and asks again).
    /// </summary>
    int SpliceSome(KernelPipe pipe, int maxBytes);

    /// <summary>Receives exactly <paramref name="destination"/>'s length; false when the peer closed first.</summary>
    bool ReceiveExactly(Span<byte> destination);

    /// <summary>Whether bytes (or the peer's close) are waiting to be received, without waiting.</summary>
    bool HasInput { get; }
}
