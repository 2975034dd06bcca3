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
/// One version of one 4 KiB block: where it lives and the epoch it was born in. 16 bytes on disk,
/// little-endian: [state : u64][birth : u64] where state is 0 (inherit), 1 (zero) or phys+2 (mapped).
/// Everything a reader needs is in the first word, so readers can take it with one atomic load
/// while a writer replaces the entry (see <see cref="MapPage.ReadState"/>). All-zero bytes mean
/// "inherit, born at epoch 0", so an absent entry and an empty page read the same.
/// </summary>
internal readonly record struct MapEntry(ulong Word0, ulong Word1)
{
    public const int Bytes = 16;
    private const ulong ZeroState = 1;
    private const ulong MappedBase = 2;

    public static MapEntry Absent => default;

    public EntryKind Kind => KindOf(Word0);

    public bool IsMapped => Word0 >= MappedBase;

    public ulong Phys => Word0 - MappedBase;

    public ulong Birth => Word1;

    public bool IsAbsent => Word0 == 0 && Word1 == 0;

    public static EntryKind KindOf(ulong state) => state >= MappedBase ? EntryKind.Mapped : state == ZeroState ? EntryKind.Zero : EntryKind.Inherit;

    /// <summary>An entry as a reader sees it from its first word alone (the birth is not needed to read).</summary>
    public static MapEntry FromState(ulong state) => new(state, 0);

    public static MapEntry Mapped(ulong phys, ulong birth) => new(phys + MappedBase, birth);

    public static MapEntry Zero(ulong birth) => new(ZeroState, birth);

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
