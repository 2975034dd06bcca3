using System.Buffers.Binary;

namespace Tidemark.Engine.Map;

internal enum EntryKind
{
    /// <summary>Not written in this lineage: falls through to the parent (a hole for a root lineage).</summary>
    Inherit = 0,

    /// <summary>Backed by a physical block.</summary>
    Mapped = 1,

    /// <summary>Explicitly zero (unmapped or write-zeroes); does not fall through.</summary>
    Zero = 2,
}

/// <summary>
/// One version of one 4 KiB block: where it lives and the epoch it was born in. 16 bytes on disk:
/// [phys+1 or 0 : u64][birth | zero flag (bit 63) : u64], little-endian. All-zero bytes mean
/// "inherit, born at epoch 0", so an absent entry and an empty page read the same.
/// </summary>
internal readonly record struct MapEntry(ulong Word0, ulong Word1)
{
    public const int Bytes = 16;
    private const ulong ZeroFlag = 1UL << 63;

    public static MapEntry Absent => default;

    public EntryKind Kind => Word0 != 0 ? EntryKind.Mapped : (Word1 & ZeroFlag) != 0 ? EntryKind.Zero : EntryKind.Inherit;

    public bool IsMapped => Word0 != 0;

    public ulong Phys => Word0 - 1;

    public ulong Birth => Word1 & ~ZeroFlag;

    public bool IsAbsent => Word0 == 0 && Word1 == 0;

    public static MapEntry Mapped(ulong phys, ulong birth) => new(phys + 1, birth);

    public static MapEntry Zero(ulong birth) => new(0, birth | ZeroFlag);

    public static MapEntry Inherit(ulong birth) => new(0, birth);

    public static MapEntry Read(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt64LittleEndian(source), BinaryPrimitives.ReadUInt64LittleEndian(source[8..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, Word0);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Word1);
    }

    public override string ToString() => Kind switch
    {
        EntryKind.Mapped => $"mapped@{Phys} born {Birth}",
        EntryKind.Zero => $"zero born {Birth}",
        _ => $"inherit born {Birth}",
    };
}

/// <summary>Physical block addresses: store index in the top bits, block within the store below.</summary>
internal static class Phys
{
    public const int StoreShift = 40;
    public const ulong BlockMask = (1UL << StoreShift) - 1;

    public static ulong Make(int store, long block) => ((ulong)store << StoreShift) | (ulong)block;

    public static int Store(ulong phys) => (int)(phys >> StoreShift);

    public static long Block(ulong phys) => (long)(phys & BlockMask);
}
