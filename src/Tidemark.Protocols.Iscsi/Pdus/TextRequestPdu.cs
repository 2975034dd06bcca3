namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.10: Text Request (opcode 04h).</summary>
public readonly record struct TextRequestPdu(
    bool Immediate,
    bool Final,
    bool Continue,
    int DataSegmentLengthBytes,
    ulong Lun,
    uint InitiatorTaskTag,
    uint TargetTransferTag,
    uint CmdSN,
    uint ExpStatSN)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out TextRequestPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.TextRequest))
        {
            pdu = default;
            return false;
        }

        pdu = new TextRequestPdu(
            (bhs[0] & 0x40) != 0,
            (bhs[1] & 0x80) != 0,
            (bhs[1] & 0x40) != 0,
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U64(bhs, 8),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U32(bhs, 20),
            BasicHeaderSegment.U32(bhs, 24),
            BasicHeaderSegment.U32(bhs, 28));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.TextRequest, Immediate, (byte)((Final ? 0x80 : 0) | (Continue ? 0x40 : 0)), DataSegmentLengthBytes, Lun, InitiatorTaskTag);
        BasicHeaderSegment.U32(bhs, 20, TargetTransferTag);
        BasicHeaderSegment.U32(bhs, 24, CmdSN);
        BasicHeaderSegment.U32(bhs, 28, ExpStatSN);
    }
}
