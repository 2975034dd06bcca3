namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.14: Logout Request (opcode 06h). Reason 0 closes the session, 1 the connection.</summary>
public readonly record struct LogoutRequestPdu(bool Immediate, byte ReasonCode, uint InitiatorTaskTag, ushort Cid, uint CmdSN, uint ExpStatSN)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out LogoutRequestPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.LogoutRequest))
        {
            pdu = default;
            return false;
        }

        pdu = new LogoutRequestPdu(
            (bhs[0] & 0x40) != 0,
            (byte)(bhs[1] & 0x7F),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U16(bhs, 20),
            BasicHeaderSegment.U32(bhs, 24),
            BasicHeaderSegment.U32(bhs, 28));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.LogoutRequest, Immediate, (byte)(0x80 | (ReasonCode & 0x7F)), 0, 0, InitiatorTaskTag);
        BasicHeaderSegment.U16(bhs, 20, Cid);
        BasicHeaderSegment.U32(bhs, 24, CmdSN);
        BasicHeaderSegment.U32(bhs, 28, ExpStatSN);
    }
}
