namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.11: Text Response (opcode 24h).</summary>
public readonly record struct TextResponsePdu(
    bool Final,
    bool Continue,
    int DataSegmentLengthBytes,
    ulong Lun,
    uint InitiatorTaskTag,
    uint TargetTransferTag,
    TargetSequence Sequence)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out TextResponsePdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.TextResponse))
        {
            pdu = default;
            return false;
        }

        pdu = new TextResponsePdu(
            (bhs[1] & 0x80) != 0,
            (bhs[1] & 0x40) != 0,
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U64(bhs, 8),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U32(bhs, 20),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.TextResponse, false, (byte)((Final ? 0x80 : 0) | (Continue ? 0x40 : 0)), DataSegmentLengthBytes, Lun, InitiatorTaskTag);
        BasicHeaderSegment.U32(bhs, 20, TargetTransferTag);
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
    }
}
