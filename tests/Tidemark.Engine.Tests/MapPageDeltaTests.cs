using System.Runtime.InteropServices;
using FsCheck;
using FsCheck.Fluent;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Map pages committed as deltas (only the entries set since the last commit) merged by the store:
/// the codec, the page's change tracking, the merge operator inside RocksDB (reads, compaction,
/// corrupt operands) and a whole pool whose pages are evicted and reloaded from merged deltas.
/// </summary>
public sealed class MapPageDeltaTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "tidemark-delta-" + Guid.NewGuid().ToString("N")[..12]);

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Fact]
    public void Page_RecordsOnlySlotsSetSinceLoadOrClear()
    {
        var page = new MapPage(7);
        var image = new byte[MapPage.Bytes];
        MapEntry.Mapped(99, 3).Write(image.AsSpan(5 * MapEntry.Bytes));
        page.Load(image);
        Assert.Equal(0, page.ChangedCount);

        page[1] = MapEntry.Mapped(10, 4);
        page[255] = MapEntry.Zero(4);
        page[1] = MapEntry.Mapped(11, 4);
        var delta = new byte[MapPageDelta.MaxBytes];
        var length = page.SaveChanges(delta);

        Assert.Equal(2, page.ChangedCount);
        Assert.Equal(MapPageDelta.Size(2), length);
        var stored = image.ToArray();
        MapPageDelta.Apply(delta.AsSpan(0, length), stored);
        var expected = new byte[MapPage.Bytes];
        page.Save(expected);
        Assert.Equal(expected, stored);

        page.ClearChanges();
        Assert.Equal(0, page.ChangedCount);
        page.Reuse(8);
        Assert.Equal(0, page.ChangedCount);
    }

    [Fact]
    public void Store_MergesDeltasOnReadAndInCompaction_AndOnAbsentOrDeletedPages()
    {
        using var store = MetaStore.Open(_directory, createIfMissing: true, 8 << 20);
        var page = new MapPage(0);
        var expected = new byte[MapPage.Bytes];

        // A page that was never stored: the deltas apply to zeros.
        Commit(store, page, p => p[3] = MapEntry.Mapped(30, 1), merge: true);
        Commit(store, page, p => p[200] = MapEntry.Mapped(31, 1), merge: true);
        page.Save(expected);
        Assert.Equal(expected, store.Get(Key(0)));

        // A whole page, then deltas on it, seen through an iterator too.
        Commit(store, page, p => p[4] = MapEntry.Zero(2), merge: false);
        Commit(store, page, p => p[3] = MapEntry.Mapped(40, 2), merge: true);
        page.Save(expected);
        Assert.Equal(expected, store.Get(Key(0)));
        byte[]? scanned = null;
        store.Scan(Key(0), (_, value) =>
        {
            scanned = value.ToArray();
            return false;
        });
        Assert.Equal(expected, scanned);

        // Compaction folds them; more deltas after it still apply.
        store.CompactAll();
        Assert.Equal(expected, store.Get(Key(0)));
        Commit(store, page, p => p[5] = MapEntry.Mapped(50, 3), merge: true);
        store.CompactAll();
        page.Save(expected);
        Assert.Equal(expected, store.Get(Key(0)));

        // A deleted page followed by a delta is that delta on zeros.
        using (var batch = new RocksDbSharp.WriteBatch())
        {
            batch.Delete(Key(0));
            store.Write(batch);
        }

        var fresh = new MapPage(0);
        Commit(store, fresh, p => p[9] = MapEntry.Mapped(90, 4), merge: true);
        fresh.Save(expected);
        Assert.Equal(expected, store.Get(Key(0)));
    }

    [Fact]
    public void Store_WithMalformedOperand_ReportsCorruptionInsteadOfAPage()
    {
        using var store = MetaStore.Open(_directory, createIfMissing: true, 8 << 20);
        using (var batch = new RocksDbSharp.WriteBatch())
        {
            batch.Put(Key(1), new byte[MapPage.Bytes]);
            var bad = new byte[] { MapPageDelta.Format, 1, 2, 3 };
            batch.Merge(Key(1), (ulong)Key(1).Length, bad, (ulong)bad.Length);
            store.Write(batch);
        }

        var error = Assert.Throws<StorageException>(() => store.Get(Key(1)));
        Assert.Equal(StorageError.Corrupt, error.Error);
    }

    [Fact]
    public unsafe void PartialMerge_KeepsTheNewestEntryOfEachSlot()
    {
        Prop.ForAll(
            Gen.ListOf(Gen.ListOf(Gen.Zip(Gen.Choose(0, 255), Gen.Choose(1, 1000)))).ToArbitrary(),
            operandSpecs =>
            {
                var operands = operandSpecs.Select(spec =>
                {
                    var page = new MapPage(0);
                    foreach (var (slot, phys) in spec)
                    {
                        page[slot] = MapEntry.Mapped((ulong)phys, 1);
                    }

                    var bytes = new byte[MapPageDelta.MaxBytes];
                    return bytes.AsSpan(0, page.SaveChanges(bytes)).ToArray();
                }).ToArray();

                // Applying the one combined operand equals applying them all in order.
                var expected = new byte[MapPage.Bytes];
                foreach (var operand in operands)
                {
                    MapPageDelta.Apply(operand, expected);
                }

                var handles = operands.Select(o => GCHandle.Alloc(o, GCHandleType.Pinned)).ToArray();
                try
                {
                    var pointers = stackalloc byte*[Math.Max(1, operands.Length)];
                    var lengths = stackalloc nuint[Math.Max(1, operands.Length)];
                    for (var i = 0; i < operands.Length; i++)
                    {
                        pointers[i] = (byte*)handles[i].AddrOfPinnedObject();
                        lengths[i] = (nuint)operands[i].Length;
                    }

                    byte success;
                    nuint length;
                    var combined = MapPageMergeOperator.PartialMergeFunction(IntPtr.Zero, null, 0, pointers, lengths, operands.Length, &success, &length);
                    try
                    {
                        var delta = new ReadOnlySpan<byte>(combined, (int)length);
                        var actual = new byte[MapPage.Bytes];
                        MapPageDelta.Apply(delta, actual);
                        return success == 1 && MapPageDelta.IsWellFormed(delta) && actual.AsSpan().SequenceEqual(expected);
                    }
                    finally
                    {
                        MapPageMergeOperator.Free(combined);
                    }
                }
                finally
                {
                    foreach (var h in handles)
                    {
                        h.Free();
                    }
                }
            }).QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Pool_WithTinyMapCache_ReloadsPagesFromMergedDeltasAcrossCommitsAndReopen()
    {
        // 64 pages of cache for a 512-page volume: most pages are evicted and read back from the
        // store, where they exist as a whole page or a zero page plus many deltas.
        using var temp = new TempPool(1L << 30, new PoolOptions { MapCacheBytes = 64 * MapPage.Bytes, MaxDirtyPages = 16 });
        var volume = temp.Pool.CreateVolume("v", 512L << 20, 4096);
        var model = Enumerable.Range(0, 300).ToDictionary(lba => (long)lba, lba => lba);

        // Whole pages too: page 0, all of it set in one commit, is more than a delta holds.
        for (var lba = 0; lba < 300; lba++)
        {
            volume.Write(lba * 4096L, Bytes.Pattern(4096, lba), forceUnitAccess: false);
        }

        temp.Pool.Flush();
        var random = new Random(5);
        var block = new byte[4096];
        for (var i = 0; i < 4000; i++)
        {
            var lba = random.NextInt64(512L << 8);
            var seed = random.Next();
            Bytes.Pattern(4096, seed).CopyTo(block, 0);
            volume.Write(lba * 4096, block, forceUnitAccess: false);
            model[lba] = seed;
            if (i % 500 == 0)
            {
                temp.Pool.CreateSnapshot("v", $"s{i}");
            }
        }

        temp.Pool.Flush();
        volume = temp.Reopen().GetVolume("v");
        foreach (var (lba, seed) in model)
        {
            volume.Read(lba * 4096, block);
            Assert.Equal(Bytes.Pattern(4096, seed), block);
        }

        temp.AssertVerifyClean();
    }

    private static byte[] Key(ulong page) => Keys.LivePageKey(1, page);

    private static void Commit(MetaStore store, MapPage page, Action<MapPage> change, bool merge)
    {
        change(page);
        using var batch = new RocksDbSharp.WriteBatch();
        var buffer = new byte[MapPageDelta.MaxBytes];
        if (merge)
        {
            var length = page.SaveChanges(buffer);
            batch.Merge(Key(page.Number), (ulong)Key(page.Number).Length, buffer, (ulong)length);
        }
        else
        {
            page.Save(buffer);
            batch.Put(Key(page.Number), buffer.AsSpan(0, MapPage.Bytes).ToArray());
        }

        page.ClearChanges();
        store.Write(batch);
    }
}
