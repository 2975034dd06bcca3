namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.3: SCSI Command (opcode 01h). The CDB is bytes 32-47; longer CDBs continue in an AHS.</summary>
public readonly record struct ScsiCommandPdu(
    bool Immediate,
    bool Final,
    bool Read,
    bool Write,
    byte TaskAttribute,
    int DataSegmentLengthBytes,
    ulong Lun,
    uint InitiatorTaskTag,
    uint ExpectedDataTransferLengthBytes,
    uint CmdSN,
    uint ExpStatSN)
{
    public const int CdbOffset = 32;
    public const int CdbLengthBytes = 16;

    public static bool TryRead(ReadOnlySpan<byte> bhs, out ScsiCommandPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.ScsiCommand))
        {
            pdu = default;
            return false;
        }

        // RFC 7143 11.3.1: F bit 7, R bit 6, W bit 5, ATTR bits 2-0 of byte 1.
        var flags = bhs[1];
        pdu = new ScsiCommandPdu(
            (bhs[0] & 0x40) != 0,
            (flags & 0x80) != 0,
            (flags & 0x40) != 0,
            (flags & 0x20) != 0,
            (byte)(flags & 0x07),
            BasicHeaderSegment.ReadDataSegmentLength(bhs),
            BasicHeaderSegment.U64(bhs, 8),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U32(bhs, 20),
            BasicHeaderSegment.U32(bhs, 24),
            BasicHeaderSegment.U32(bhs, 28));
        return true;
    }

    public void WriteTo(Span<byte> bhs, ReadOnlySpan<byte> cdb)
    {
        var flags = (byte)((Final ? 0x80 : 0) | (Read ? 0x40 : 0) | (Write ? 0x20 : 0) | (TaskAttribute & 0x07));
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.ScsiCommand, Immediate, flags, DataSegmentLengthBytes, Lun, InitiatorTaskTag);
        BasicHeaderSegment.U32(bhs, 20, ExpectedDataTransferLengthBytes);
        BasicHeaderSegment.U32(bhs, 24, CmdSN);
        BasicHeaderSegment.U32(bhs, 28, ExpStatSN);
        cdb[..Math.Min(cdb.Length, CdbLengthBytes)].CopyTo(bhs[CdbOffset..]);
    }
}
