namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.19: NOP-In (opcode 20h), the answer to a NOP-Out ping.</summary>
public readonly record struct NopInPdu(
    int DataSegmentLengthBytes,
    ulong Lun,
    uint InitiatorTaskTag,
    uint TargetTransferTag,
    TargetSequence Sequence)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out NopInPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.NopIn))
        {
            pdu = default;
            return false;
        }

        pdu = new NopInPdu(
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U64(bhs, 8),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U32(bhs, 20),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.NopIn, false, 0x80, DataSegmentLengthBytes, Lun, InitiatorTaskTag);
        BasicHeaderSegment.U32(bhs, 20, TargetTransferTag);
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
    }
}
