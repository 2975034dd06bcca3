namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    private ScsiResult ReadDefectData(in ScsiCommand c)
    {
        // SBC-4 READ DEFECT DATA (10)/(12): REQ_PLIST bit 4, REQ_GLIST bit 3, DEFECT LIST FORMAT bits 2-0
        // of byte 2 (10) or byte 1 (12). A volume has no media defects: both lists are valid and empty. The header
        // echoes the requested lists (PLISTV, GLISTV) and format: with no descriptors there is nothing to
        // convert, and the (12) form's ADDRESS DESCRIPTOR INDEX (bytes 2-5) indexes an empty list.
        var twelve = c.Opcode == ScsiOpcode.ReadDefectData12;
        var request = c.Cdb[twelve ? 1 : 2] & 0x1F;
        var allocation = twelve ? (int)Math.Min(ReadUInt32(c.Cdb, 6), int.MaxValue) : ReadUInt16(c.Cdb, 7);
        Span<byte> header = stackalloc byte[8];
        header.Clear();
        header[1] = (byte)request;
        return c.ReturnData(header[..(twelve ? 8 : 4)], allocation);
    }
}
