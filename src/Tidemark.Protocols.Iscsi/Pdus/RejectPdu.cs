namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.17: Reject (opcode 3Fh). The data segment is the rejected PDU's header.</summary>
public readonly record struct RejectPdu(RejectReason Reason, int DataSegmentLengthBytes, TargetSequence Sequence, uint DataSN)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out RejectPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.Reject))
        {
            pdu = default;
            return false;
        }

        pdu = new RejectPdu(
            (RejectReason)bhs[2],
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)),
            BasicHeaderSegment.U32(bhs, 36));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        // RFC 7143 11.17: bytes 16-19 are FFFFFFFFh.
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.Reject, false, 0x80, DataSegmentLengthBytes, 0, BasicHeaderSegment.ReservedTag);
        bhs[2] = (byte)Reason;
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
        BasicHeaderSegment.U32(bhs, 36, DataSN);
    }
}
