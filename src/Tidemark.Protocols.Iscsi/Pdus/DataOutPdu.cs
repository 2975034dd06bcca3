namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.7: SCSI Data-Out (opcode 05h), solicited by an R2T (TargetTransferTag) or unsolicited (TTT FFFFFFFFh).</summary>
public readonly record struct DataOutPdu(
    bool Final,
    int DataSegmentLengthBytes,
    ulong Lun,
    uint InitiatorTaskTag,
    uint TargetTransferTag,
    uint ExpStatSN,
    uint DataSN,
    uint BufferOffset)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out DataOutPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.DataOut))
        {
            pdu = default;
            return false;
        }

        pdu = new DataOutPdu(
            (bhs[1] & 0x80) != 0,
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U64(bhs, 8),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U32(bhs, 20),
            BasicHeaderSegment.U32(bhs, 28),
            BasicHeaderSegment.U32(bhs, 36),
            BasicHeaderSegment.U32(bhs, 40));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.DataOut, false, (byte)(Final ? 0x80 : 0), DataSegmentLengthBytes, Lun, InitiatorTaskTag);
        BasicHeaderSegment.U32(bhs, 20, TargetTransferTag);
        BasicHeaderSegment.U32(bhs, 28, ExpStatSN);
        BasicHeaderSegment.U32(bhs, 36, DataSN);
        BasicHeaderSegment.U32(bhs, 40, BufferOffset);
    }
}
