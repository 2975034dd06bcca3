namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.13: Login Response (opcode 23h).</summary>
public readonly record struct LoginResponsePdu(
    bool Transit,
    bool Continue,
    int CurrentStage,
    int NextStage,
    int DataSegmentLengthBytes,
    ulong Isid,
    ushort Tsih,
    uint InitiatorTaskTag,
    TargetSequence Sequence,
    LoginStatus Status)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out LoginResponsePdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.LoginResponse))
        {
            pdu = default;
            return false;
        }

        var f = bhs[1];
        pdu = new LoginResponsePdu(
            (f & 0x80) != 0,
            (f & 0x40) != 0,
            (f >> 2) & 0x03,
            f & 0x03,
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U64(bhs, 8) >> 16,
            BasicHeaderSegment.U16(bhs, 14),
            BasicHeaderSegment.U32(bhs, 16),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)),
            (LoginStatus)BasicHeaderSegment.U16(bhs, 36));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        var flags = (byte)((Transit ? 0x80 : 0) | (Continue ? 0x40 : 0) | ((CurrentStage & 3) << 2) | (NextStage & 3));
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.LoginResponse, false, flags, DataSegmentLengthBytes, (Isid << 16) | Tsih, InitiatorTaskTag);

        // RFC 7143 11.13.2: Version-max and Version-active are both 00h.
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
        BasicHeaderSegment.U16(bhs, 36, (ushort)Status);
    }
}
