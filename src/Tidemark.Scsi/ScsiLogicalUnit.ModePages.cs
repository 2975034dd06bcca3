using System.Buffers.Binary;

namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    private const byte CachingPage = 0x08;
    private const byte ControlPage = 0x0A;
    private const byte InformationalExceptionsPage = 0x1C;
    private const byte AllPages = 0x3F;
    private const byte SoftwareWriteProtectBit = 0x08;

    private ScsiResult ModeSense(in ScsiCommand c)
    {
        var ten = c.Opcode == ScsiOpcode.ModeSense10;
        var disableBlockDescriptors = (c.Cdb[1] & 0x08) != 0;
        var pageControl = c.Cdb[2] >> 6;
        var page = (byte)(c.Cdb[2] & 0x3F);
        var subpage = c.Cdb[3];
        int allocation = ten ? ReadUInt16(c.Cdb, 7) : c.Cdb[4];

        // SPC-4 6.11: PC 11b asks for saved values, which this unit does not keep.
        if (pageControl == 3)
        {
            return c.Fail(SenseData.SavingParametersNotSupported);
        }

        if (subpage != 0 && !(page == AllPages && subpage == 0xFF))
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        Span<byte> b = stackalloc byte[128];
        b.Clear();
        var header = ten ? 8 : 4;
        var p = header;

        // SPC-4 7.5.4 / SBC-3 6.4.2: device-specific parameter WP (bit 7) and DPOFUA (bit 4).
        b[ten ? 3 : 2] = (byte)((WriteProtection is null ? 0 : 0x80) | 0x10);
        if (!disableBlockDescriptors)
        {
            // Short LBA block descriptor: NUMBER OF BLOCKS saturates, BLOCK LENGTH in 3 bytes.
            var blocks = CapacityBlocks;
            BinaryPrimitives.WriteUInt32BigEndian(b[p..], blocks > uint.MaxValue ? uint.MaxValue : (uint)blocks);
            BinaryPrimitives.WriteUInt32BigEndian(b[(p + 4)..], (uint)BlockBytes & 0x00FF_FFFF);
            p += 8;
            if (ten)
            {
                b[7] = 8;
            }
            else
            {
                b[3] = 8;
            }
        }

        var changeable = pageControl == 1;
        var any = false;
        if (page is CachingPage or AllPages)
        {
            p += WriteCachingPage(b[p..], changeable);
            any = true;
        }

        if (page is ControlPage or AllPages)
        {
            p += WriteControlPage(b[p..], changeable);
            any = true;
        }

        if (page is InformationalExceptionsPage or AllPages)
        {
            p += WriteInformationalExceptionsPage(b[p..], changeable);
            any = true;
        }

        if (!any)
        {
            return c.Fail(SenseData.InvalidFieldInCdb);
        }

        // MODE DATA LENGTH excludes itself.
        if (ten)
        {
            BinaryPrimitives.WriteUInt16BigEndian(b, (ushort)(p - 2));
        }
        else
        {
            b[0] = (byte)(p - 1);
        }

        return c.ReturnData(b[..p], allocation);
    }

    private static int WriteCachingPage(Span<byte> b, bool changeable)
    {
        // SBC-3 6.4.5: WCE=1, writes are volatile until SYNCHRONIZE CACHE or FUA (DESIGN.md durability).
        b[0] = CachingPage;
        b[1] = 0x12;
        if (!changeable)
        {
            b[2] = 0x04;
        }

        return 20;
    }

    private int WriteControlPage(Span<byte> b, bool changeable)
    {
        // SPC-4 7.5.8: fixed-format sense (D_SENSE=0), unrestricted reordering (QUEUE ALGORITHM
        // MODIFIER 1); SWP (byte 4 bit 3) is the one changeable field.
        b[0] = ControlPage;
        b[1] = 0x0A;
        if (changeable)
        {
            b[4] = SoftwareWriteProtectBit;
        }
        else
        {
            b[3] = 0x10;
            b[4] = IsSoftwareWriteProtected ? SoftwareWriteProtectBit : (byte)0;
            BinaryPrimitives.WriteUInt16BigEndian(b[8..], 0xFFFF);
        }

        return 12;
    }

    private static int WriteInformationalExceptionsPage(Span<byte> b, bool changeable)
    {
        // SPC-4 7.5.12: informational exceptions reporting disabled (MRIE 0).
        _ = changeable;
        b[0] = InformationalExceptionsPage;
        b[1] = 0x0A;
        return 12;
    }

    private int WritePage(byte page, Span<byte> b, bool changeable) => page switch
    {
        CachingPage => WriteCachingPage(b, changeable),
        ControlPage => WriteControlPage(b, changeable),
        InformationalExceptionsPage => WriteInformationalExceptionsPage(b, changeable),
        _ => -1,
    };

    private ScsiResult ModeSelect(ScsiNexus nexus, in ScsiCommand c)
    {
        var ten = c.Opcode == ScsiOpcode.ModeSelect10;
        int listLength = ten ? ReadUInt16(c.Cdb, 7) : c.Cdb[4];

        // SPC-4 6.9: SP (save pages) cannot be honoured; PF must be set for page-format data.
        if ((c.Cdb[1] & 0x01) != 0)
        {
            return c.Fail(SenseData.SavingParametersNotSupported, listLength);
        }

        if (listLength == 0)
        {
            return ScsiCommand.Good();
        }

        if (c.DataOut.Length < listLength)
        {
            return c.Fail(SenseData.ParameterListLengthError, listLength);
        }

        var list = c.DataOut[..listLength];
        var header = ten ? 8 : 4;
        if (list.Length < header)
        {
            return c.Fail(SenseData.ParameterListLengthError, listLength);
        }

        int descriptors = ten ? BinaryPrimitives.ReadUInt16BigEndian(list[6..]) : list[3];
        var p = header + descriptors;
        if (p > list.Length)
        {
            return c.Fail(SenseData.ParameterListLengthError, listLength);
        }

        // Every page is checked before anything changes: a page is accepted when the fields that are
        // not changeable equal the current values (SPC-4 6.9); a refused list changes nothing.
        Span<byte> current = stackalloc byte[32];
        Span<byte> mask = stackalloc byte[32];
        bool? softwareWriteProtect = null;
        while (p < list.Length)
        {
            if (list.Length - p < 2)
            {
                return c.Fail(SenseData.ParameterListLengthError, listLength);
            }

            var page = (byte)(list[p] & 0x3F);
            var length = 2 + list[p + 1];
            if (p + length > list.Length)
            {
                return c.Fail(SenseData.ParameterListLengthError, listLength);
            }

            current.Clear();
            mask.Clear();
            var expected = WritePage(page, current, changeable: false);
            WritePage(page, mask, changeable: true);
            if (expected != length)
            {
                return c.Fail(SenseData.InvalidFieldInParameterList, listLength);
            }

            // Bytes 0-1 are the page code and length; the mask applies from byte 2.
            for (var i = 2; i < length; i++)
            {
                if (((list[p + i] ^ current[i]) & ~mask[i]) != 0)
                {
                    return c.Fail(SenseData.InvalidFieldInParameterList, listLength);
                }
            }

            if (page == ControlPage)
            {
                softwareWriteProtect = (list[p + 4] & SoftwareWriteProtectBit) != 0;
            }

            p += length;
        }

        if (softwareWriteProtect is { } swp)
        {
            SetSoftwareWriteProtect(nexus, swp);
        }

        return ScsiCommand.Good(0, listLength);
    }
}
