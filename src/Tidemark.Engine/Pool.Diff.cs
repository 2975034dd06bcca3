using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

/// <summary>
/// Changed blocks between two images of a volume's history. Within one lineage the blocks changed
/// between epochs a &lt; b are exactly those with a version that died in (a, b], found in the death
/// index: the cost follows what changed, not the volume size. Across lineages (after a rollback, or
/// between a view and its origin) each lineage below the common ancestor adds the blocks it wrote.
/// </summary>
public sealed partial class Pool
{
    /// <summary>
    /// The ranges (in bytes) that differ between snapshot <paramref name="fromSnapshot"/> of a volume and
    /// <paramref name="toSnapshot"/> (or the live image when null). A range may be reported that was
    /// rewritten with identical data; a changed range is never missed.
    /// </summary>
    public IReadOnlyList<ChangedRange> Diff(string volumeName, string fromSnapshot, string? toSnapshot)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var volume = GetVolume(volumeName);
            var (fromLineage, from) = FindSnapshot(volume, fromSnapshot);
            Lineage toLineage;
            ulong toEpoch;
            long size;
            if (toSnapshot is null)
            {
                toLineage = volume.Lineage;
                toEpoch = Lineage.Live;
                size = volume.SizeBytes;
            }
            else
            {
                var (l, s) = FindSnapshot(volume, toSnapshot);
                toLineage = l;
                toEpoch = s.Epoch;
                size = s.SizeBytes;
            }

            Flush();
            var blocks = ChangedBlocks(fromLineage, from.Epoch, toLineage, toEpoch);
            return ToRanges(blocks, Math.Max(size, from.SizeBytes));
        }
    }

    private SortedSet<ulong> ChangedBlocks(Lineage a, ulong aEpoch, Lineage b, ulong bEpoch)
    {
        var chainA = Chain(a, aEpoch);
        var chainB = Chain(b, bEpoch);
        var blocks = new SortedSet<ulong>();
        for (var i = 0; i < chainA.Count; i++)
        {
            var j = chainB.FindIndex(x => x.Lineage == chainA[i].Lineage);
            if (j < 0)
            {
                continue;
            }

            var (lo, hi) = chainA[i].Epoch <= chainB[j].Epoch ? (chainA[i].Epoch, chainB[j].Epoch) : (chainB[j].Epoch, chainA[i].Epoch);
            DiedBetween(chainA[i].Lineage, lo, hi, blocks);
            foreach (var (lineage, _) in chainA.Take(i).Concat(chainB.Take(j)))
            {
                WrittenIn(lineage, blocks);
            }

            return blocks;
        }

        throw new StorageException(StorageError.InvalidArgument, "the two images share no history, so there is no diff between them; use a full copy");
    }

    private static List<(Lineage Lineage, ulong Epoch)> Chain(Lineage lineage, ulong epoch)
    {
        var chain = new List<(Lineage, ulong)> { (lineage, epoch) };
        for (var l = lineage; l.Parent is not null; l = l.Parent)
        {
            chain.Add((l.Parent, l.ParentEpoch));
        }

        return chain;
    }

    // Blocks with a version that died in (lo, hi]: changed between the images at lo and hi.
    private void DiedBetween(Lineage lineage, ulong lo, ulong hi, SortedSet<ulong> blocks)
    {
        if (lo == hi)
        {
            return;
        }

        Meta.Scan(Keys.Prefix(Keys.DeathIndex, lineage.Id), Keys.Key3(Keys.DeathIndex, lineage.Id, lo + 1), (key, _) =>
        {
            var death = Keys.ReadU64At(key, 5);
            if (death > hi)
            {
                return false;
            }

            blocks.Add(Keys.ReadU64At(key, 13));
            return true;
        });
    }

    // Every block a lineage holds its own version of (a superset of what differs from its parent).
    private void WrittenIn(Lineage lineage, SortedSet<ulong> blocks)
    {
        Meta.Scan(Keys.Prefix(Keys.LivePage, lineage.Id), (key, value) =>
        {
            var page = Keys.ReadU64At(key, 5);
            for (var i = 0; i < MapPage.BlocksPerPage; i++)
            {
                if (MapEntry.Read(value[(i * MapEntry.Bytes)..]).Kind != EntryKind.Inherit)
                {
                    blocks.Add((page << MapPage.PageShift) + (ulong)i);
                }
            }

            return true;
        });
        Meta.Scan(Keys.Prefix(Keys.History, lineage.Id), (key, value) =>
        {
            if (MapEntry.Read(value).Kind != EntryKind.Inherit)
            {
                blocks.Add(Keys.ReadU64At(key, 5));
            }

            return true;
        });
    }

    private static List<ChangedRange> ToRanges(SortedSet<ulong> blocks, long sizeBytes)
    {
        var ranges = new List<ChangedRange>();
        long start = -1, end = -1;
        foreach (var block in blocks)
        {
            var offset = (long)block << Lineage.BlockShift;
            if (offset >= sizeBytes)
            {
                break;
            }

            if (offset == end)
            {
                end += Lineage.BlockBytes;
                continue;
            }

            if (start >= 0)
            {
                ranges.Add(new ChangedRange(start, Math.Min(end, sizeBytes) - start));
            }

            start = offset;
            end = offset + Lineage.BlockBytes;
        }

        if (start >= 0)
        {
            ranges.Add(new ChangedRange(start, Math.Min(end, sizeBytes) - start));
        }

        return ranges;
    }
}

public readonly record struct ChangedRange(long OffsetBytes, long LengthBytes);
