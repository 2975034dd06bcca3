using System.Buffers.Binary;
using System.Text;
using Tidemark.Server.Api;

namespace Tidemark.Server.Tests;

/// <summary>What already lives on a device is recognized by its magic bytes, so a store is not laid over it.</summary>
public sealed class DiskSignatureTests
{
    public static TheoryData<string, int, string> Magics => new()
    {
        { "ext2/3/4", 1080, "\u0053\u00EF" },
        { "XFS", 0, "XFSB" },
        { "btrfs", 0x10040, "_BHRfS_M" },
        { "swap", 4086, "SWAPSPACE2" },
        { "GPT", 512, "EFI PART" },
        { "LVM2", 512, "LABELONE" },
        { "LUKS", 0, "LUKS\u00BA\u00BE" },
        { "MBR", 510, "\u0055\u00AA" },
    };

    [Theory]
    [MemberData(nameof(Magics))]
    public void Detect_KnownSignature_IsNamed(string what, int offset, string magic)
    {
        var disk = new byte[DiskSignatures.ProbeBytes];
        Encoding.Latin1.GetBytes(magic).CopyTo(disk, offset);
        if (what == "LVM2")
        {
            Encoding.Latin1.GetBytes("LVM2 001").CopyTo(disk, offset + 24);
        }

        var found = DiskSignatures.Detect(disk);

        Assert.NotNull(found);
        Assert.Contains(what.Split('/')[0], found, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Detect_MdRaidSuperblock_IsNamed()
    {
        var disk = new byte[DiskSignatures.ProbeBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan(4096), 0xA92B4EFC);

        Assert.Contains("mdraid", DiskSignatures.Detect(disk), StringComparison.Ordinal);
    }

    [Fact]
    public void Detect_ZerosOrShortInput_IsNothing()
    {
        Assert.Null(DiskSignatures.Detect(new byte[DiskSignatures.ProbeBytes]));
        Assert.Null(DiskSignatures.Detect(new byte[100]));
    }
}
