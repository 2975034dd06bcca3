using System.Runtime.InteropServices;
using Tidemark.Engine.Map;

namespace Tidemark.Engine.Metadata;

/// <summary>
/// The store's merge operator for map pages: a live page key holds a whole page (a Put) followed by
/// <see cref="MapPageDelta"/> operands, and every read (Get or iterator) and every compaction sees
/// the page with the deltas applied in order. Registered through the C API with unmanaged function
/// pointers whose types match rocksdb/c.h exactly (<c>unsigned char* success</c>, <c>size_t*</c>
/// lengths). A malformed operand or stored page is reported to RocksDB as a failed merge, which
/// surfaces as a Corruption status on the read, never as a page built from bad bytes.
/// </summary>
internal static unsafe partial class MapPageMergeOperator
{
    private static readonly byte* s_name = CreateName("tidemark.map-page-delta.v1");

    /// <summary>Sets the operator on <paramref name="options"/> (the options own it from then on).</summary>
    public static void SetOn(IntPtr options)
    {
        var handle = Create(
            IntPtr.Zero,
            &Destroy,
            &FullMerge,
            &PartialMerge,
            &DeleteValue,
            &Name);
        SetMergeOperator(options, handle);
    }

    /// <summary>The partial merge as RocksDB calls it (tests: compaction decides when it runs).</summary>
    internal static delegate* unmanaged<IntPtr, byte*, nuint, byte**, nuint*, int, byte*, nuint*, byte*> PartialMergeFunction => &PartialMerge;

    /// <summary>Frees a value a merge returned (tests).</summary>
    internal static void Free(byte* value) => NativeMemory.Free(value);

    [UnmanagedCallersOnly]
    private static void Destroy(IntPtr state)
    {
    }

    [UnmanagedCallersOnly]
    private static byte* Name(IntPtr state) => s_name;

    [UnmanagedCallersOnly]
    private static void DeleteValue(IntPtr state, byte* value, nuint length) => NativeMemory.Free(value);

    [UnmanagedCallersOnly]
    private static byte* FullMerge(
        IntPtr state, byte* key, nuint keyLength, byte* existing, nuint existingLength,
        byte** operands, nuint* operandLengths, int count, byte* success, nuint* newLength)
    {
        *success = 0;
        *newLength = 0;
        if (existing is not null && existingLength != MapPage.Bytes)
        {
            return null;
        }

        for (var i = 0; i < count; i++)
        {
            if (!MapPageDelta.IsWellFormed(new ReadOnlySpan<byte>(operands[i], (int)operandLengths[i])))
            {
                return null;
            }
        }

        var result = (byte*)NativeMemory.Alloc(MapPage.Bytes);
        var page = new Span<byte>(result, MapPage.Bytes);
        if (existing is null)
        {
            page.Clear();
        }
        else
        {
            new ReadOnlySpan<byte>(existing, MapPage.Bytes).CopyTo(page);
        }

        for (var i = 0; i < count; i++)
        {
            MapPageDelta.Apply(new ReadOnlySpan<byte>(operands[i], (int)operandLengths[i]), page);
        }

        *newLength = MapPage.Bytes;
        *success = 1;
        return result;
    }

    [UnmanagedCallersOnly]
    private static byte* PartialMerge(
        IntPtr state, byte* key, nuint keyLength,
        byte** operands, nuint* operandLengths, int count, byte* success, nuint* newLength)
    {
        *success = 0;
        *newLength = 0;
        Span<byte> page = stackalloc byte[MapPage.Bytes];
        Span<bool> present = stackalloc bool[MapPage.BlocksPerPage];
        present.Clear();
        for (var i = 0; i < count; i++)
        {
            var delta = new ReadOnlySpan<byte>(operands[i], (int)operandLengths[i]);
            if (!MapPageDelta.IsWellFormed(delta))
            {
                return null;
            }

            MapPageDelta.Apply(delta, page, present);
        }

        var result = (byte*)NativeMemory.Alloc(MapPageDelta.MaxBytes);
        *newLength = (nuint)MapPageDelta.Write(page, present, new Span<byte>(result, MapPageDelta.MaxBytes));
        *success = 1;
        return result;
    }

    private static byte* CreateName(string name)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(name + "\0");
        var native = (byte*)NativeMemory.Alloc((nuint)bytes.Length);
        bytes.CopyTo(new Span<byte>(native, bytes.Length));
        return native;
    }

    [LibraryImport("rocksdb", EntryPoint = "rocksdb_mergeoperator_create")]
    private static partial IntPtr Create(
        IntPtr state,
        delegate* unmanaged<IntPtr, void> destructor,
        delegate* unmanaged<IntPtr, byte*, nuint, byte*, nuint, byte**, nuint*, int, byte*, nuint*, byte*> fullMerge,
        delegate* unmanaged<IntPtr, byte*, nuint, byte**, nuint*, int, byte*, nuint*, byte*> partialMerge,
        delegate* unmanaged<IntPtr, byte*, nuint, void> deleteValue,
        delegate* unmanaged<IntPtr, byte*> name);

    [LibraryImport("rocksdb", EntryPoint = "rocksdb_options_set_merge_operator")]
    private static partial void SetMergeOperator(IntPtr options, IntPtr mergeOperator);
}
