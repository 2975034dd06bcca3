using System.Buffers.Binary;

namespace Tidemark.Scsi;

/// <summary>Commands answered by the target rather than a logical unit: REPORT LUNS and any CDB sent to a LUN that does not exist.</summary>
public static class ScsiTargetCommands
{
    /// <summary>Largest LUN the flat addressing method can carry (SAM-5 4.7.7.4).</summary>
    public const int MaxLun = 0x3FFF;

    /// <summary>SAM-5 4.7: single-level LUN, peripheral (0-255) or flat (256-16383) addressing.</summary>
    public static ulong EncodeLun(int lun) => lun < 256
        ? (ulong)lun << 48
        : ((ulong)(0x4000 | (lun & MaxLun))) << 48;

    /// <summary>Decodes the first level of an 8-byte LUN; -1 for a method this target does not use.</summary>
    public static int DecodeLun(ulong lun)
    {
        var first = (int)(lun >> 48);
        return (first >> 14) switch
        {
            0 => (first >> 8) == 0 ? first & 0xFF : -1,
            1 => first & MaxLun,
            _ => -1,
        };
    }

    public static ScsiResult ReportLuns(in ScsiCommand c, ReadOnlySpan<int> luns)
    {
        // SPC-4 6.33: SELECT REPORT byte 2, ALLOCATION LENGTH bytes 6-9 (at least 16).
        var allocation = BinaryPrimitives.ReadUInt32BigEndian(c.Cdb[6..]);
        if (allocation < 16 || c.Cdb[2] > 2)
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        var total = 8 + (8 * luns.Length);
        var n = (int)Math.Min(Math.Min(total, allocation), c.DataIn.Length);
        Span<byte> entry = stackalloc byte[8];
        entry.Clear();
        BinaryPrimitives.WriteUInt32BigEndian(entry, (uint)(8 * luns.Length));
        entry[..Math.Min(8, n)].CopyTo(c.DataIn);
        for (var i = 0; i < luns.Length; i++)
        {
            var at = 8 + (8 * i);
            if (at >= n)
            {
                break;
            }

            BinaryPrimitives.WriteUInt64BigEndian(entry, EncodeLun(luns[i]));
            entry[..Math.Min(8, n - at)].CopyTo(c.DataIn[at..]);
        }

        return ScsiCommand.Good(n, Math.Min(total, allocation));
    }

    /// <summary>
    /// SPC-4 6.6.2 / SAM-5 5.9: INQUIRY to a missing LUN answers with PERIPHERAL QUALIFIER 011b; REPORT LUNS
    /// and REQUEST SENSE are served; everything else is LOGICAL UNIT NOT SUPPORTED.
    /// </summary>
    public static ScsiResult ExecuteForMissingLun(in ScsiCommand c, ReadOnlySpan<int> luns)
    {
        if (c.Cdb.IsEmpty)
        {
            return c.Fail(SenseData.InvalidOpcode);
        }

        switch (c.Cdb[0])
        {
            case ScsiOpcode.ReportLuns when c.Cdb.Length >= 12:
                return ReportLuns(c, luns);
            case ScsiOpcode.Inquiry when c.Cdb.Length >= 6:
                if ((c.Cdb[1] & 0x01) != 0 || c.Cdb[2] != 0)
                {
                    return c.Fail(SenseData.LogicalUnitNotSupported);
                }

                Span<byte> inquiry = stackalloc byte[36];
                inquiry.Clear();
                inquiry[0] = 0x7F;
                inquiry[2] = 0x06;
                inquiry[3] = 0x02;
                inquiry[4] = 31;
                return c.ReturnData(inquiry, BinaryPrimitives.ReadUInt16BigEndian(c.Cdb[3..]));
            case ScsiOpcode.RequestSense when c.Cdb.Length >= 6:
                Span<byte> sense = stackalloc byte[SenseData.FixedFormatLengthBytes];
                SenseData.LogicalUnitNotSupported.WriteFixedTo(sense);
                return c.ReturnData(sense, c.Cdb[4]);
            default:
                return c.Fail(SenseData.LogicalUnitNotSupported);
        }
    }
}
