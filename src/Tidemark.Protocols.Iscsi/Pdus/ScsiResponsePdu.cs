namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.4: SCSI Response (opcode 21h). The data segment is SenseLength (2 bytes) and sense data.</summary>
public readonly record struct ScsiResponsePdu(
    bool ResidualOverflow,
    bool ResidualUnderflow,
    byte Response,
    byte Status,
    int DataSegmentLengthBytes,
    uint InitiatorTaskTag,
    TargetSequence Sequence,
    uint ExpDataSN,
    uint ResidualCount)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out ScsiResponsePdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.ScsiResponse))
        {
            pdu = default;
            return false;
        }

        pdu = new ScsiResponsePdu(
            (bhs[1] & 0x04) != 0,
            (bhs[1] & 0x02) != 0,
            bhs[2],
            bhs[3],
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U32(bhs, 16),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)),
            BasicHeaderSegment.U32(bhs, 36),
            BasicHeaderSegment.U32(bhs, 44));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        // RFC 7143 11.4.1: byte 1 is 1 o u O U 0 with bit 7 always set; O/U are bits 2 and 1.
        var flags = (byte)(0x80 | (ResidualOverflow ? 0x04 : 0) | (ResidualUnderflow ? 0x02 : 0));
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.ScsiResponse, false, flags, DataSegmentLengthBytes, 0, InitiatorTaskTag);
        bhs[2] = Response;
        bhs[3] = Status;
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
        BasicHeaderSegment.U32(bhs, 36, ExpDataSN);
        BasicHeaderSegment.U32(bhs, 44, ResidualCount);
    }
}
