namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.15: Logout Response (opcode 26h).</summary>
public readonly record struct LogoutResponsePdu(byte Response, uint InitiatorTaskTag, TargetSequence Sequence, ushort Time2Wait, ushort Time2Retain)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out LogoutResponsePdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.LogoutResponse))
        {
            pdu = default;
            return false;
        }

        pdu = new LogoutResponsePdu(
            bhs[2],
            BasicHeaderSegment.U32(bhs, 16),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)),
            BasicHeaderSegment.U16(bhs, 40),
            BasicHeaderSegment.U16(bhs, 42));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.LogoutResponse, false, 0x80, 0, 0, InitiatorTaskTag);
        bhs[2] = Response;
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
        BasicHeaderSegment.U16(bhs, 40, Time2Wait);
        BasicHeaderSegment.U16(bhs, 42, Time2Retain);
    }
}
