using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    private const int StandardInquiryLengthBytes = 96;

    /// <summary>Supported VPD pages, sorted (SPC-4 7.8.14 requires ascending order).</summary>
    private static ReadOnlySpan<byte> SupportedVpdPages => [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2];

    /// <summary>Blocks one UNMAP or WRITE SAME may cover; libiscsi bounds the reported value at 1 Mi blocks.</summary>
    private uint MaxUnmapBlocks => (uint)Math.Clamp(_options.MaxUnmapBytes / BlockBytes, 1, 1 << 20);

    /// <summary>
    /// WRITE SAME blocks per command: bounded like a transfer, because libiscsi checks a WRITE SAME of
    /// MAXIMUM WRITE SAME LENGTH blocks against an ordinary WRITE of the same size.
    /// </summary>
    private uint MaxWriteSameBlocks => (uint)Math.Max(1, _options.MaxTransferBytes / BlockBytes);

    private ScsiResult Inquiry(in ScsiCommand c)
    {
        var evpd = (c.Cdb[1] & 0x01) != 0;
        var page = c.Cdb[2];
        var allocation = ReadUInt16(c.Cdb, 3);

        // SPC-4 6.6.1: CMDDT (obsolete) set, or a page code without EVPD, is an invalid field.
        if ((c.Cdb[1] & 0x02) != 0 || (!evpd && page != 0))
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        Span<byte> buffer = stackalloc byte[256];
        buffer.Clear();
        int length;
        if (!evpd)
        {
            length = WriteStandardInquiry(buffer);
        }
        else
        {
            length = page switch
            {
                0x00 => WriteSupportedVpdPages(buffer),
                0x80 => WriteUnitSerialNumber(buffer),
                0x83 => WriteDeviceIdentification(buffer),
                0x8F => WriteThirdPartyCopy(buffer),
                0xB0 => WriteBlockLimits(buffer),
                0xB1 => WriteBlockDeviceCharacteristics(buffer),
                0xB2 => WriteLogicalBlockProvisioning(buffer),
                _ => -1,
            };
            if (length < 0)
            {
                return c.Fail(SenseData.InvalidFieldInCdb);
            }
        }

        return c.ReturnData(buffer[..length], allocation);
    }

    private int WriteStandardInquiry(Span<byte> b)
    {
        // SPC-4 6.6.2: direct-access block device, not removable, VERSION 06h (SPC-4),
        // RESPONSE DATA FORMAT 2 with HISUP, CMDQUE set.
        b[0] = 0x00;
        b[1] = 0x00;
        b[2] = 0x06;
        b[3] = 0x12;
        b[4] = StandardInquiryLengthBytes - 5;
        b[7] = 0x02;
        WriteAscii(b.Slice(8, 8), _options.VendorId);
        WriteAscii(b.Slice(16, 16), _options.ProductId);
        WriteAscii(b.Slice(32, 4), _options.ProductRevision);

        // Version descriptors (SPC-4 table 87): SAM-5, iSCSI, SPC-4, SBC-3.
        BinaryPrimitives.WriteUInt16BigEndian(b[58..], 0x00A0);
        BinaryPrimitives.WriteUInt16BigEndian(b[60..], 0x0960);
        BinaryPrimitives.WriteUInt16BigEndian(b[62..], 0x0460);
        BinaryPrimitives.WriteUInt16BigEndian(b[64..], 0x04C0);
        return StandardInquiryLengthBytes;
    }

    private static int WriteSupportedVpdPages(Span<byte> b)
    {
        b[1] = 0x00;
        b[3] = (byte)SupportedVpdPages.Length;
        SupportedVpdPages.CopyTo(b[4..]);
        return 4 + SupportedVpdPages.Length;
    }

    private int WriteUnitSerialNumber(Span<byte> b)
    {
        // SPC-4 7.8.15: the serial number is the device identity in hex (stable across restarts).
        b[1] = 0x80;
        var serial = SerialNumber;
        b[3] = (byte)serial.Length;
        WriteAscii(b.Slice(4, serial.Length), serial);
        return 4 + serial.Length;
    }

    private string SerialNumber => Device.Id.ToString("N");

    private int WriteDeviceIdentification(Span<byte> b)
    {
        // SPC-4 7.8.6: designation descriptors, all associated with the logical unit.
        b[1] = 0x83;
        var p = 4;

        b[p] = 0x01; // code set binary
        b[p + 1] = 0x03; // PIV 0, association LU, designator type NAA
        b[p + 3] = NaaDesignatorBytes;
        WriteNaaDesignator(b.Slice(p + 4, NaaDesignatorBytes));
        p += 4 + NaaDesignatorBytes;

        // T10 vendor ID based (SPC-4 7.8.6.4): vendor id then the serial number.
        var serial = SerialNumber;
        b[p] = 0x02; // code set ASCII
        b[p + 1] = 0x01; // association LU, designator type T10 vendor ID
        b[p + 3] = (byte)(8 + serial.Length);
        WriteAscii(b.Slice(p + 4, 8), _options.VendorId);
        WriteAscii(b.Slice(p + 12, serial.Length), serial);
        p += 4 + 8 + serial.Length;

        BinaryPrimitives.WriteUInt16BigEndian(b[2..], (ushort)(p - 4));
        return p;
    }

    private const int NaaDesignatorBytes = 16;

    /// <summary>NAA IEEE Registered Extended (NAA 6, SPC-4 7.8.6.6.5): 16 bytes derived from the device id.</summary>
    private void WriteNaaDesignator(Span<byte> destination)
    {
        Device.Id.TryWriteBytes(destination, bigEndian: true, out _);
        destination[0] = (byte)(0x60 | (destination[0] & 0x0F));
    }

    private int WriteBlockLimits(Span<byte> b)
    {
        // SBC-3 6.5.3, PAGE LENGTH 3Ch.
        b[1] = 0xB0;
        b[3] = 0x3C;
        // WSNZ=0 (byte 4): WRITE SAME with zero blocks writes to the last block, within MAXIMUM WRITE SAME LENGTH.
        b[5] = (byte)_options.MaxCompareAndWriteBlocks;
        var granularity = (ushort)Math.Max(1, Device.AllocationUnitBytes / BlockBytes);
        BinaryPrimitives.WriteUInt16BigEndian(b[6..], granularity);
        BinaryPrimitives.WriteUInt32BigEndian(b[8..], (uint)(_options.MaxTransferBytes / BlockBytes));
        BinaryPrimitives.WriteUInt32BigEndian(b[12..], (uint)(_options.MaxTransferBytes / BlockBytes));
        BinaryPrimitives.WriteUInt32BigEndian(b[20..], MaxUnmapBlocks);
        BinaryPrimitives.WriteUInt32BigEndian(b[24..], (uint)_options.MaxUnmapDescriptors);
        BinaryPrimitives.WriteUInt32BigEndian(b[28..], granularity);
        BinaryPrimitives.WriteUInt32BigEndian(b[32..], 0x8000_0000); // UGAVALID, alignment 0
        BinaryPrimitives.WriteUInt64BigEndian(b[36..], MaxWriteSameBlocks);
        WriteAtomicLimits(b);
        return 64;
    }

    private static int WriteBlockDeviceCharacteristics(Span<byte> b)
    {
        // SBC-3 6.5.2: MEDIUM ROTATION RATE 1 = non-rotating medium. SBC-4: WABEREQ and WACEREQ 01b
        // (byte 7): after a block or crypto erase SANITIZE, reads succeed (the blocks are deallocated
        // and read as zeros).
        b[1] = 0xB1;
        b[3] = 0x3C;
        b[5] = 0x01;
        b[7] = 0x40 | 0x10;
        return 64;
    }

    private static int WriteLogicalBlockProvisioning(Span<byte> b)
    {
        // SBC-3 6.5.4: LBPU, LBPWS, LBPWS10, LBPRZ; PROVISIONING TYPE 2 (thin).
        b[1] = 0xB2;
        b[3] = 0x04;
        b[5] = 0x80 | 0x40 | 0x20 | 0x04;
        b[6] = 0x02;
        return 8;
    }

    private static void WriteAscii(Span<byte> destination, string text)
    {
        // SPC-4 4.4.1: ASCII fields are left-aligned and padded with spaces.
        destination.Fill((byte)' ');
        var n = Math.Min(destination.Length, text.Length);
        Encoding.ASCII.GetBytes(text.AsSpan(0, n), destination);
    }
}
