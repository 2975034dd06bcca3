namespace Tidemark.Server;

// IReplySendFeature: NBD's replier thread, which only sends replies, sends them itself whatever their
// size, and a large READ's payload is read into a block lent here and sent from it, not copied into
// the output (ADR 0021, "Who sends a read's reply").
internal sealed partial class SocketReplyWriter
{
    bool IReplySendFeature.SendOnThisThread()
    {
        if (Negotiation is not null)
        {
            throw new InvalidOperationException("replies are sent on the replier's thread only in the data phase");
        }

        return SendQueued(onThisThread: true);
    }

    byte[] IReplySendFeature.RentPayload(int lengthBytes, out int offset)
    {
        // Page-aligned, as a large span of Reserve is: for the device read that fills it and the send that copies it out.
        var block = BlockPool.RentAligned(lengthBytes);
        offset = AlignedOffset(block);
        return block;
    }

    void IReplySendFeature.WritePayload(byte[] block, int offset, int lengthBytes)
    {
        if (_completed)
        {
            BlockPool.Return(block);
            throw new ObjectDisposedException(nameof(SocketReplyWriter));
        }

        // After what the current block holds so far; writing goes on in it behind the payload.
        CutSegment();
        _queued.Add(new ArraySegment<byte>(block, offset, lengthBytes));
        _retired.Add(block);
    }

    void IReplySendFeature.ReturnPayload(byte[] block) => BlockPool.Return(block);

    /// <summary>Queues what was written into the current block since its last segment, and goes on writing after it.</summary>
    private void CutSegment()
    {
        if (_block is not null && _position > _segmentStart)
        {
            _queued.Add(new ArraySegment<byte>(_block, _segmentStart, _position - _segmentStart));
            _segmentStart = _position;
        }
    }
}
