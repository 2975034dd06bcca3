namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.8: Ready To Transfer (R2T, opcode 31h). Carries the next StatSN without advancing it.</summary>
public readonly record struct ReadyToTransferPdu(
    ulong Lun,
    uint InitiatorTaskTag,
    uint TargetTransferTag,
    TargetSequence Sequence,
    uint R2TSN,
    uint BufferOffset,
    uint DesiredDataTransferLengthBytes)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out ReadyToTransferPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.ReadyToTransfer))
        {
            pdu = default;
            return false;
        }

        pdu = new ReadyToTransferPdu(
            BasicHeaderSegment.U64(bhs, 8),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U32(bhs, 20),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)),
            BasicHeaderSegment.U32(bhs, 36),
            BasicHeaderSegment.U32(bhs, 40),
            BasicHeaderSegment.U32(bhs, 44));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.ReadyToTransfer, false, 0x80, 0, Lun, InitiatorTaskTag);
        BasicHeaderSegment.U32(bhs, 20, TargetTransferTag);
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
        BasicHeaderSegment.U32(bhs, 36, R2TSN);
        BasicHeaderSegment.U32(bhs, 40, BufferOffset);
        BasicHeaderSegment.U32(bhs, 44, DesiredDataTransferLengthBytes);
    }
}
