using RocksDbSharp;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

/// <summary>
/// Freeing space: snapshot deletion (the blocks only that snapshot kept), lineage deletion (views,
/// deleted volumes), and resuming both after a crash. Work proceeds in bounded batches, each one
/// atomic and consistent on its own, so a crash at any point leaves a pool that opens and verifies.
/// </summary>
public sealed partial class Pool
{
    private const int DeletionBatchRecords = 8192;

    // Removes a snapshot: hidden when a lineage still depends on it, deleted (space freed) otherwise.
    private void RemoveSnapshotLocked(Lineage lineage, SnapshotRecord snapshot, bool orphaned)
    {
        if (IsPinned(lineage, snapshot.Epoch))
        {
            snapshot.State = SnapshotState.Hidden;
            Commit(batch => PutSnapshot(batch, snapshot));
            return;
        }

        var active = _volumes.Values.FirstOrDefault(v => v.Lineage == lineage && !orphaned);
        active?.Gate.EnterExclusive();
        try
        {
            // From here no new history record can be one only this snapshot sees (see docs/adr/0002).
            snapshot.State = SnapshotState.Deleting;
            lineage.RemoveSeer(snapshot.Epoch);
            Commit(batch => PutSnapshot(batch, snapshot));
        }
        finally
        {
            active?.Gate.ExitExclusive();
        }

        FreeSnapshotData(lineage, snapshot);
    }

    private void FreeSnapshotData(Lineage lineage, SnapshotRecord snapshot)
    {
        var s = snapshot.Epoch;
        var seers = lineage.Snapshots.Values.Where(x => x.State != SnapshotState.Deleting).Select(x => x.Epoch).ToList();
        var previous = seers.Where(e => e < s).DefaultIfEmpty(0UL).Max();
        var nextSnapshot = seers.Where(e => e > s).DefaultIfEmpty(0UL).Min();
        var upTo = nextSnapshot != 0 ? nextSnapshot : lineage.Record.Epoch;

        // Versions that died in (s, upTo] and were born after the previous snapshot were seen by s alone.
        var ops = new List<byte[]>();
        var freed = new List<ulong>();
        var from = Keys.Key3(Keys.DeathIndex, lineage.Id, s + 1);
        if (_progress is { } progress)
        {
            // Two keys (history and its death-index entry) go per version that dies with the snapshot.
            progress.SetTotal(2 * CountDeathRecords(lineage.Id, from, upTo, previous));
        }

        using (var it = Meta.NewIterator())
        {
            for (it.Seek(from); it.Valid(); it.Next())
            {
                var key = it.GetKeySpan();
                if (key[0] != Keys.DeathIndex || Keys.ReadLineage(key) != lineage.Id || Keys.ReadU64At(key, 5) > upTo)
                {
                    break;
                }

                var entry = MapEntry.Read(it.GetValueSpan());
                if (previous != 0 && entry.Birth <= previous)
                {
                    continue;
                }

                var death = Keys.ReadU64At(key, 5);
                var block = Keys.ReadU64At(key, 13);
                ops.Add(key.ToArray());
                var history = new byte[Keys.HistoryKeyBytes];
                Keys.WriteHistoryKey(history, lineage.Id, block, death);
                ops.Add(history);
                if (entry.IsMapped)
                {
                    freed.Add(entry.Phys);
                }

                if (ops.Count >= DeletionBatchRecords)
                {
                    CommitDeletes(ops, freed);
                }
            }
        }

        CommitDeletes(ops, freed);
        if (nextSnapshot == 0 && lineage.Record.State != LineageState.Active)
        {
            // A frozen lineage's live map is its newest image: what was born after the new newest
            // snapshot is seen by nobody now.
            TrimLive(lineage, previous);
        }

        Commit(batch => batch.Delete(Keys.SnapshotKey(lineage.Id, s)));
        lineage.Snapshots.Remove(s);
    }

    private long CountDeathRecords(uint lineage, byte[] from, ulong upTo, ulong previous)
    {
        long count = 0;
        using var it = Meta.NewIterator();
        for (it.Seek(from); it.Valid(); it.Next())
        {
            var key = it.GetKeySpan();
            if (key[0] != Keys.DeathIndex || Keys.ReadLineage(key) != lineage || Keys.ReadU64At(key, 5) > upTo)
            {
                break;
            }

            if (previous == 0 || MapEntry.Read(it.GetValueSpan()).Birth > previous)
            {
                count++;
            }
        }

        return count;
    }

    private void CommitDeletes(List<byte[]> keys, List<ulong> freed)
    {
        if (keys.Count == 0 && freed.Count == 0)
        {
            return;
        }

        _progress?.Advance(keys.Count);

        Commit(
            batch =>
            {
                foreach (var key in keys)
                {
                    batch.Delete(key);
                }
            },
            [.. freed]);
        keys.Clear();
        freed.Clear();
    }

    // Drops live entries born after `keepUpTo` (all of them when it is 0) from a frozen lineage.
    private void TrimLive(Lineage lineage, ulong keepUpTo)
    {
        Flush();
        var changes = new List<(long Block, MapEntry Entry)>();
        Meta.Scan(Keys.Prefix(Keys.LivePage, lineage.Id), (key, value) =>
        {
            var page = Keys.ReadU64At(key, 5);
            for (var i = 0; i < MapPage.BlocksPerPage; i++)
            {
                var entry = MapEntry.Read(value[(i * MapEntry.Bytes)..]);
                if (!entry.IsAbsent && (keepUpTo == 0 || entry.Birth > keepUpTo))
                {
                    changes.Add(((long)(page << MapPage.PageShift) + i, entry));
                }
            }

            return true;
        });

        var freed = new List<ulong>();
        foreach (var (block, entry) in changes)
        {
            lineage.ReplaceLive(block, MapEntry.Absent);
            if (entry.IsMapped)
            {
                freed.Add(entry.Phys);
            }

            if (freed.Count >= DeletionBatchRecords)
            {
                Commit(null, [.. freed]);
                freed.Clear();
            }
        }

        Commit(null, freed);
    }

    // A frozen lineage that no snapshot and no child needs any more is deleted; its parent's hidden
    // snapshot may then be released in turn.
    private void CollectLineageIfUnused(Lineage lineage)
    {
        while (true)
        {
            if (lineage.Record.State != LineageState.Frozen
                || lineage.Snapshots.Values.Any(s => s.State != SnapshotState.Deleting)
                || HasChildren(lineage))
            {
                if (lineage.Record.State == LineageState.Frozen && lineage.Record.Volume == Guid.Empty && lineage.HasSeers)
                {
                    // Orphaned (its volume was deleted) but still needed: keep only what the snapshots see.
                    TrimLive(lineage, lineage.Snapshots.Values.Where(s => s.State != SnapshotState.Deleting).Max(s => s.Epoch));
                }

                return;
            }

            DeleteLineageData(lineage);
            var parent = lineage.Parent;
            if (parent is null)
            {
                return;
            }

            if (parent.Snapshots.TryGetValue(lineage.ParentEpoch, out var pinned) && pinned.State == SnapshotState.Hidden && !IsPinned(parent, pinned.Epoch))
            {
                RemoveSnapshotLocked(parent, pinned, orphaned: parent.Record.State != LineageState.Active);
            }

            lineage = parent;
        }
    }

    private bool HasChildren(Lineage lineage)
    {
        lock (_lineages)
        {
            return _lineages.Values.Any(l => l.Parent == lineage && l.Record.State != LineageState.Deleting);
        }
    }

    private void DeleteLineageData(Lineage lineage)
    {
        lineage.Record.State = LineageState.Deleting;
        Commit(batch => PutLineage(batch, lineage));
        lineage.DropCache();

        var ops = new List<byte[]>();
        var freed = new List<ulong>();
        Meta.Scan(Keys.Prefix(Keys.LivePage, lineage.Id), (key, value) =>
        {
            for (var i = 0; i < MapPage.BlocksPerPage; i++)
            {
                var entry = MapEntry.Read(value[(i * MapEntry.Bytes)..]);
                if (entry.IsMapped)
                {
                    freed.Add(entry.Phys);
                }
            }

            ops.Add(key.ToArray());
            if (freed.Count >= DeletionBatchRecords)
            {
                CommitDeletes(ops, freed);
            }

            return true;
        });
        CommitDeletes(ops, freed);
        Meta.Scan(Keys.Prefix(Keys.History, lineage.Id), (key, value) =>
        {
            var entry = MapEntry.Read(value);
            if (entry.IsMapped)
            {
                freed.Add(entry.Phys);
            }

            ops.Add(key.ToArray());
            if (ops.Count >= DeletionBatchRecords)
            {
                CommitDeletes(ops, freed);
            }

            return true;
        });
        CommitDeletes(ops, freed);

        Commit(batch =>
        {
            batch.Delete(Keys.Prefix(Keys.Counters, lineage.Id));
            foreach (var tag in new[] { Keys.DeathIndex, Keys.Snapshot })
            {
                var start = Keys.Prefix(tag, lineage.Id);
                var end = Keys.Prefix(tag, lineage.Id + 1);
                batch.DeleteRange(start, (ulong)start.Length, end, (ulong)end.Length);
            }

            batch.Delete(Keys.LineageKey(lineage.Id));
            if (_volumes.TryGetValue(lineage.Record.Volume, out var owner) && owner.Record.Lineages.Remove(lineage.Id))
            {
                PutVolume(batch, owner.Record);
            }
        });
        lock (_lineages)
        {
            _lineages.Remove(lineage.Id);
        }
    }

    private void ResumeDeletions()
    {
        lock (_controlLock)
        {
            foreach (var lineage in _lineages.Values.Where(l => l.Record.State == LineageState.Deleting).ToList())
            {
                DeleteLineageData(lineage);
            }

            foreach (var lineage in _lineages.Values.ToList())
            {
                foreach (var snapshot in lineage.Snapshots.Values.Where(s => s.State == SnapshotState.Deleting).ToList())
                {
                    FreeSnapshotData(lineage, snapshot);
                }
            }

            foreach (var lineage in _lineages.Values.Where(l => l.Record.State == LineageState.Frozen).ToList())
            {
                if (_lineages.ContainsKey(lineage.Id))
                {
                    CollectLineageIfUnused(lineage);
                }
            }
        }
    }

    /// <summary>
    /// Space of a snapshot: unique bytes (freed if it were deleted) and shared bytes (kept by it and by
    /// the live image or other snapshots). Costs a scan of the volume's metadata.
    /// </summary>
    public SnapshotUsage GetSnapshotUsage(string address)
    {
        var (volumeName, snapshotName) = Names.SplitSnapshot(address);
        lock (_controlLock)
        {
            ThrowIfUnusable();
            Flush();
            var volume = GetVolume(volumeName);
            var (lineage, snapshot) = FindSnapshot(volume, snapshotName);
            var s = snapshot.Epoch;
            var seers = lineage.Snapshots.Values.Where(x => x.State != SnapshotState.Deleting).Select(x => x.Epoch).ToList();
            var previous = seers.Where(e => e < s).DefaultIfEmpty(0UL).Max();
            var nextSnapshot = seers.Where(e => e > s).DefaultIfEmpty(0UL).Min();
            var upTo = nextSnapshot != 0 ? nextSnapshot : ulong.MaxValue;
            long unique = 0, referenced = 0;
            var diedAfter = new HashSet<ulong>();
            Meta.Scan(Keys.Prefix(Keys.History, lineage.Id), (key, value) =>
            {
                var entry = MapEntry.Read(value);
                var block = Keys.ReadU64At(key, 5);
                var death = Keys.ReadU64At(key, 13);
                if (death > s)
                {
                    diedAfter.Add(block);
                    if (entry.IsMapped && entry.Birth <= s)
                    {
                        referenced++;
                        if (death <= upTo && (previous == 0 || entry.Birth > previous))
                        {
                            unique++;
                        }
                    }
                }

                return true;
            });
            var frozenNewest = nextSnapshot == 0 && lineage.Record.State != LineageState.Active;
            Meta.Scan(Keys.Prefix(Keys.LivePage, lineage.Id), (key, value) =>
            {
                var page = Keys.ReadU64At(key, 5);
                for (var i = 0; i < MapPage.BlocksPerPage; i++)
                {
                    var entry = MapEntry.Read(value[(i * MapEntry.Bytes)..]);
                    if (entry.IsMapped && entry.Birth <= s && !diedAfter.Contains((page << MapPage.PageShift) + (ulong)i))
                    {
                        referenced++;
                        if (frozenNewest && (previous == 0 || entry.Birth > previous))
                        {
                            unique++;
                        }
                    }
                }

                return true;
            });
            return new SnapshotUsage(unique * Lineage.BlockBytes, (referenced - unique) * Lineage.BlockBytes);
        }
    }
}

public sealed record SnapshotUsage(long UniqueBytes, long SharedBytes);
