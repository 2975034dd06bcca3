namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.7: SCSI Data-In (opcode 25h); with the S bit it also carries the command's status (phase collapse).</summary>
public readonly record struct DataInPdu(
    bool Final,
    bool HasStatus,
    bool ResidualOverflow,
    bool ResidualUnderflow,
    byte Status,
    int DataSegmentLengthBytes,
    ulong Lun,
    uint InitiatorTaskTag,
    TargetSequence Sequence,
    uint DataSN,
    uint BufferOffset,
    uint ResidualCount)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out DataInPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.DataIn))
        {
            pdu = default;
            return false;
        }

        var f = bhs[1];
        pdu = new DataInPdu(
            (f & 0x80) != 0,
            (f & 0x01) != 0,
            (f & 0x04) != 0,
            (f & 0x02) != 0,
            bhs[3],
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U64(bhs, 8),
            BasicHeaderSegment.U32(bhs, 16),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)),
            BasicHeaderSegment.U32(bhs, 36),
            BasicHeaderSegment.U32(bhs, 40),
            BasicHeaderSegment.U32(bhs, 44));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        // RFC 7143 11.7.1-11.7.3: F bit 7, A bit 6, O bit 2, U bit 1, S bit 0. Status fields only with S.
        var flags = (byte)((Final ? 0x80 : 0) | (HasStatus ? 0x01 | (ResidualOverflow ? 0x04 : 0) | (ResidualUnderflow ? 0x02 : 0) : 0));
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.DataIn, false, flags, DataSegmentLengthBytes, Lun, InitiatorTaskTag);
        bhs[3] = HasStatus ? Status : (byte)0;
        BasicHeaderSegment.U32(bhs, 20, BasicHeaderSegment.ReservedTag);
        BasicHeaderSegment.U32(bhs, 24, HasStatus ? Sequence.StatSN : 0);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
        BasicHeaderSegment.U32(bhs, 36, DataSN);
        BasicHeaderSegment.U32(bhs, 40, BufferOffset);
        BasicHeaderSegment.U32(bhs, 44, HasStatus ? ResidualCount : 0);
    }
}
