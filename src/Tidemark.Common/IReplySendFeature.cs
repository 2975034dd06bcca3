namespace Tidemark;

/// <summary>
/// How a protocol chooses which thread sends its replies, offered by a transport's output (a
/// <see cref="System.IO.Pipelines.PipeWriter"/> that also implements this; the plain TCP transport's
/// does, TLS and in-memory pipes do not, and their protocols flush as usual). A flush of the plain
/// output hands a large reply to the transport's own sender thread so that a connection thread can
/// go on receiving; a protocol whose replies are written by a thread of their own, or by a thread
/// that must never block, says so here instead (docs/adr/0021-nbd-parallel-reads.md).
/// </summary>
/// <remarks>Same rule as the output itself: called by the output's one writer at a time.</remarks>
public interface IReplySendFeature
{
    /// <summary>
    /// Sends everything written so far on the calling thread, large replies too, blocking while the
    /// peer does not read (its send deadline bounds that): for a thread that only sends replies, for
    /// which the hand-off to the transport's sender thread would only add a wake-up. Replies handed
    /// to that thread earlier are sent first (there, in order). False once the peer no longer reads.
    /// </summary>
    bool SendOnThisThread();

    /// <summary>
    /// Sends what was written so far without blocking the caller: true when all of it was sent. False
    /// when some is left (the peer's receive window is full, the transport's sender thread still has
    /// earlier replies, or the connection failed): the next flush or <see cref="SendOnThisThread"/>
    /// sends the rest, or reports the failure. For a thread that must never wait on a peer.
    /// </summary>
    bool TrySendWithoutBlocking();

    /// <summary>
    /// A buffer for a large reply's payload, filled by the caller (a device read) and queued by
    /// <see cref="WritePayload"/> without a copy: <paramref name="lengthBytes"/> bytes from
    /// <paramref name="offset"/> (page-aligned) of the block returned. The caller owns the block until
    /// it passes it to <see cref="WritePayload"/> or <see cref="ReturnPayload"/>. Any thread may call this.
    /// </summary>
    byte[] RentPayload(int lengthBytes, out int offset);

    /// <summary>
    /// Queues <paramref name="lengthBytes"/> of <paramref name="block"/> (from <see cref="RentPayload"/>)
    /// at <paramref name="offset"/> after what was written so far, without copying them; the output
    /// owns the block from here on and gives it back once it was sent (or dropped).
    /// </summary>
    void WritePayload(byte[] block, int offset, int lengthBytes);

    /// <summary>Gives back a block from <see cref="RentPayload"/> that was not written. Any thread may call this.</summary>
    void ReturnPayload(byte[] block);
}
