namespace Tidemark;

/// <summary>
/// How a protocol hands large replies to its transport's output, offered by the output itself (a
/// <see cref="System.IO.Pipelines.PipeWriter"/> that also implements this; the plain TCP transport's
/// does, TLS and in-memory pipes do not, and their protocols write and flush as usual). A flush of the
/// plain output hands a large reply to the transport's own sender thread so that a connection thread
/// can go on receiving; a protocol whose replies are sent by a thread of their own says so here, and
/// a reply's payload read by a device can be sent from the buffer it was read into, without a copy
/// into the output (docs/adr/0021-nbd-parallel-reads.md, "Who sends a read's reply").
/// </summary>
/// <remarks>Called by the output's one writer at a time, except where a member says otherwise.</remarks>
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
