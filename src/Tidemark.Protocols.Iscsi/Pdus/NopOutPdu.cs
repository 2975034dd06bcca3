namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.18: NOP-Out (opcode 00h). ITT FFFFFFFFh means "no answer wanted".</summary>
public readonly record struct NopOutPdu(
    bool Immediate,
    int DataSegmentLengthBytes,
    ulong Lun,
    uint InitiatorTaskTag,
    uint TargetTransferTag,
    uint CmdSN,
    uint ExpStatSN)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out NopOutPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.NopOut))
        {
            pdu = default;
            return false;
        }

        pdu = new NopOutPdu(
            (bhs[0] & 0x40) != 0,
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
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.NopOut, Immediate, 0x80, DataSegmentLengthBytes, Lun, InitiatorTaskTag);
        BasicHeaderSegment.U32(bhs, 20, TargetTransferTag);
        BasicHeaderSegment.U32(bhs, 24, CmdSN);
        BasicHeaderSegment.U32(bhs, 28, ExpStatSN);
    }
}
