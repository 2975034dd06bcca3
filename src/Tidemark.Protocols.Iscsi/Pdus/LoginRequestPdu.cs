namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.12: Login Request (opcode 03h, always immediate).</summary>
public readonly record struct LoginRequestPdu(
    bool Transit,
    bool Continue,
    int CurrentStage,
    int NextStage,
    byte VersionMax,
    byte VersionMin,
    int DataSegmentLengthBytes,
    ulong Isid,
    ushort Tsih,
    uint InitiatorTaskTag,
    ushort Cid,
    uint CmdSN,
    uint ExpStatSN)
{
    /// <summary>RFC 7143 11.12.3: stage codes.</summary>
    public const int SecurityNegotiation = 0;
    public const int OperationalNegotiation = 1;
    public const int FullFeaturePhase = 3;

    public static bool TryRead(ReadOnlySpan<byte> bhs, out LoginRequestPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.LoginRequest))
        {
            pdu = default;
            return false;
        }

        // RFC 7143 11.12.1-11.12.3: T bit 7, C bit 6, CSG bits 3-2, NSG bits 1-0; ISID is 6 bytes at 8.
        var f = bhs[1];
        pdu = new LoginRequestPdu(
            (f & 0x80) != 0,
            (f & 0x40) != 0,
            (f >> 2) & 0x03,
            f & 0x03,
            bhs[2],
            bhs[3],
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U64(bhs, 8) >> 16,
            BasicHeaderSegment.U16(bhs, 14),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U16(bhs, 20),
            BasicHeaderSegment.U32(bhs, 24),
            BasicHeaderSegment.U32(bhs, 28));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        var flags = (byte)((Transit ? 0x80 : 0) | (Continue ? 0x40 : 0) | ((CurrentStage & 3) << 2) | (NextStage & 3));
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.LoginRequest, true, flags, DataSegmentLengthBytes, (Isid << 16) | Tsih, InitiatorTaskTag);
        bhs[2] = VersionMax;
        bhs[3] = VersionMin;
        BasicHeaderSegment.U16(bhs, 20, Cid);
        BasicHeaderSegment.U32(bhs, 24, CmdSN);
        BasicHeaderSegment.U32(bhs, 28, ExpStatSN);
    }
}
