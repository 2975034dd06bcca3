using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Server.Api;

/// <summary>
/// Recognizes what already lives on a device or file by the magic bytes near its start (as blkid and
/// wipefs do): a store must not be laid over a file system, a partition table or a volume-manager
/// member by a typo. Superblocks kept at the end of a device (mdraid 0.90/1.0) are not looked for.
/// </summary>
public static class DiskSignatures
{
    /// <summary>Bytes to read from the start: btrfs keeps its superblock at 64 KiB.</summary>
    public const int ProbeBytes = 68 * 1024;

    /// <summary>What the first bytes hold ("an ext2/3/4 file system"), or null when nothing is recognized.</summary>
    public static string? Detect(ReadOnlySpan<byte> start)
    {
        if (Has(start, 0, "XFSB"))
        {
            return "an XFS file system";
        }

        if (Has(start, 0, "LUKS\u00ba\u00be"))
        {
            return "a LUKS encrypted volume";
        }

        if (start.Length >= 1082 && start[1080] == 0x53 && start[1081] == 0xEF)
        {
            return "an ext2/3/4 file system";
        }

        if (Has(start, 0x10040, "_BHRfS_M"))
        {
            return "a btrfs file system";
        }

        if (Has(start, 4086, "SWAPSPACE2") || Has(start, 4086, "SWAP-SPACE"))
        {
            return "swap space";
        }

        for (var sector = 0; sector < 4; sector++)
        {
            if (Has(start, sector * 512, "LABELONE") && Has(start, (sector * 512) + 24, "LVM2 001"))
            {
                return "an LVM2 physical volume";
            }
        }

        foreach (var offset in new[] { 0, 4096 })
        {
            if (start.Length >= offset + 4 && BinaryPrimitives.ReadUInt32LittleEndian(start[offset..]) == 0xA92B4EFC)
            {
                return "an mdraid (Linux software RAID) member";
            }
        }

        if (Has(start, 512, "EFI PART") || Has(start, 4096, "EFI PART"))
        {
            return "a GPT partition table";
        }

        if (Has(start, 3, "NTFS    "))
        {
            return "an NTFS file system";
        }

        if (Has(start, 32769, "CD001"))
        {
            return "an ISO 9660 image";
        }

        if (start.Length >= 512 && start[510] == 0x55 && start[511] == 0xAA)
        {
            return "an MBR partition table or a boot sector (FAT, for example)";
        }

        return null;
    }

    private static bool Has(ReadOnlySpan<byte> data, int offset, string magic)
    {
        var bytes = Encoding.Latin1.GetBytes(magic);
        return data.Length >= offset + bytes.Length && data.Slice(offset, bytes.Length).SequenceEqual(bytes);
    }
}
