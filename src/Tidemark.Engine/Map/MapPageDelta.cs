namespace Tidemark.Engine.Map;

/// <summary>
/// The changed entries of one map page, stored as a RocksDB merge operand under the page's key
/// instead of the whole page (see <see cref="Metadata.MapPageMergeOperator"/>). A random 4 KiB write
/// changes one entry of a 4 KiB page; committing the page whole wrote 4 KiB of metadata per 4 KiB of
/// data, which filled the store's memtables, batches and compactions (docs/BENCHMARKS.md, memory).
/// Layout: a format byte, then for each entry its slot (1 byte) and the entry (16 bytes); a later
/// record for the same slot replaces an earlier one.
/// </summary>
internal static class MapPageDelta
{
    public const byte Format = (byte)'D';
    public const int RecordBytes = 1 + MapEntry.Bytes;

    /// <summary>Pages with more changed entries than this are stored whole (a delta would save little).</summary>
    public const int MaxSlots = 64;

    /// <summary>The largest delta: every slot once.</summary>
    public const int MaxBytes = 1 + (MapPage.BlocksPerPage * RecordBytes);

    public static int Size(int slots) => 1 + (slots * RecordBytes);

    /// <summary>True when <paramref name="delta"/> has the format byte and whole records.</summary>
    public static bool IsWellFormed(ReadOnlySpan<byte> delta) =>
        delta.Length >= 1 && delta[0] == Format && (delta.Length - 1) % RecordBytes == 0;

    /// <summary>
    /// Applies a well-formed delta to a whole page image (<see cref="MapPage.Bytes"/> bytes) and, when
    /// <paramref name="present"/> is not empty, marks the slots it set there.
    /// </summary>
    public static void Apply(ReadOnlySpan<byte> delta, Span<byte> page, Span<bool> present = default)
    {
        for (var at = 1; at < delta.Length; at += RecordBytes)
        {
            int slot = delta[at];
            delta.Slice(at + 1, MapEntry.Bytes).CopyTo(page[(slot * MapEntry.Bytes)..]);
            if (!present.IsEmpty)
            {
                present[slot] = true;
            }
        }
    }

    /// <summary>
    /// Writes the delta that sets the <paramref name="present"/> slots of <paramref name="page"/> to
    /// <paramref name="destination"/> (at least <see cref="MaxBytes"/>); returns its length.
    /// </summary>
    public static int Write(ReadOnlySpan<byte> page, ReadOnlySpan<bool> present, Span<byte> destination)
    {
        destination[0] = Format;
        var length = 1;
        for (var slot = 0; slot < MapPage.BlocksPerPage; slot++)
        {
            if (present[slot])
            {
                page.Slice(slot * MapEntry.Bytes, MapEntry.Bytes).CopyTo(Record(destination, ref length, slot));
            }
        }

        return length;
    }

    /// <summary>Appends the record of <paramref name="slot"/> at <paramref name="length"/>; returns where its entry goes.</summary>
    public static Span<byte> Record(Span<byte> delta, ref int length, int slot)
    {
        delta[length] = (byte)slot;
        var entry = delta.Slice(length + 1, MapEntry.Bytes);
        length += RecordBytes;
        return entry;
    }
}
