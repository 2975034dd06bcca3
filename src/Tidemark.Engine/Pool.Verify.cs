using System.Collections;
using Tidemark.Engine.Control;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

/// <summary>
/// Checks a pool's invariants against what is durable: every record decodes and passes its checksum,
/// every referenced block lies inside a store and is referenced once, the allocator's committed
/// bitmap equals the set of referenced blocks (no leak, no double use), history and its death index
/// agree, and lineages, snapshots and volumes point at each other consistently. Control-plane
/// records (exports, policies...) are checked for a well-formed key and their checksum.
/// </summary>
public sealed partial class Pool
{
    private const int MaxReportedProblems = 100;

    /// <summary>Test hook: runs once verify has its view, with the commit lock released.</summary>
    internal Action? VerifyStarted { get; set; }

    /// <summary>
    /// Checks every invariant; <paramref name="progress"/> counts the records read (of an estimated
    /// total) and its cancellation stops the check early with <see cref="OperationCanceledException"/>.
    /// It reads the durable state of one instant (a metadata snapshot taken after a flush), so writes
    /// and their commits go on meanwhile; snapshot, delete and other control operations wait.
    /// </summary>
    public VerifyReport Verify(OperationProgress? progress = null)
    {
        lock (_controlLock)
        {
            using var _ = Track(progress);
            progress?.SetTotal(Meta.EstimateKeys());
            ThrowIfUnusable();
            Flush();
            MetaView view;
            long[] capacities;
            lock (_commitLock)
            {
                view = Meta.OpenView();
                capacities = _storeRecords.Select(s => _stores[s.Index].CapacityBytes / Lineage.BlockBytes).ToArray();
            }

            using (view)
            {
                VerifyStarted?.Invoke();
                return VerifyView(view, capacities);
            }
        }
    }

    private VerifyReport VerifyView(MetaView meta, long[] capacities)
    {
        var pass = new VerifyPass(this, meta, capacities);
        var lineageIds = pass.CheckRecords();
        pass.CheckLineageParents();
        var counted = pass.CheckLivePages(lineageIds);
        pass.CheckCounters(counted);
        pass.CheckHistory();
        pass.CheckAllocation();
        _progress?.Cancellation.ThrowIfCancellationRequested();
        return pass.Report();
    }

    /// <summary>
    /// One verification's state: the problems found so far (the first <see cref="MaxReportedProblems"/>),
    /// which blocks the durable state references, and what was counted; each check reads one part of
    /// the metadata view.
    /// </summary>
    private sealed class VerifyPass(Pool pool, MetaView meta, long[] capacities)
    {
        private readonly List<string> _problems = [];
        private readonly BitArray[] _referenced = capacities.Select(c => new BitArray((int)Math.Min(c, int.MaxValue))).ToArray();
        private long _mappedEntries, _historyRecords, _records, _used;

        public VerifyReport Report() => new(_problems, _used * Lineage.BlockBytes, _mappedEntries, _historyRecords, _records);

        private void Problem(string text)
        {
            if (_problems.Count < MaxReportedProblems)
            {
                _problems.Add(text);
            }
        }

        // Every record read counts; a cancelled check stops at the next record.
        private bool Tick()
        {
            pool._progress?.Advance(1);
            return pool._progress is not { Cancellation.IsCancellationRequested: true };
        }

        private void Reference(ulong phys, string where)
        {
            var store = Phys.Store(phys);
            var block = Phys.Block(phys);
            if (store >= _referenced.Length || block < 1 || block >= capacities[store])
            {
                Problem($"{where} points outside the pool's stores (store {store}, block {block})");
                return;
            }

            if (_referenced[store][(int)block])
            {
                Problem($"block {block} of store {store} is referenced twice (again by {where})");
            }

            _referenced[store][(int)block] = true;
        }

        private void Decode<T>(byte tag, string what, Action<T> check)
        {
            meta.Scan([tag], (_, value) =>
            {
                _records++;
                try
                {
                    check(RecordCodec.Decode<T>(value, what));
                }
                catch (StorageException ex)
                {
                    Problem(ex.Message);
                }

                return Tick();
            });
        }

        /// <summary>Every record decodes and passes its checksum; snapshots and volumes point at existing lineages.</summary>
        public HashSet<uint> CheckRecords()
        {
            var lineageIds = new HashSet<uint>();
            Decode<LineageRecord>(Keys.Lineage, "lineage", r => lineageIds.Add(r.Id));
            Decode<PoolRecord>(Keys.Pool, "pool", _ => { });
            Decode<StoreRecord>(Keys.Store, "store", _ => { });
            Decode<GroupRecord>(Keys.Group, "group", _ => { });
            Decode<SnapshotRecord>(Keys.Snapshot, "snapshot", r =>
            {
                if (!pool._lineages.TryGetValue(r.Lineage, out var l))
                {
                    Problem($"snapshot {r.Name} belongs to a missing lineage {r.Lineage}");
                }
                else if (r.Epoch >= l.Record.Epoch)
                {
                    Problem($"snapshot {r.Name} has epoch {r.Epoch}, not before its lineage's current epoch {l.Record.Epoch}");
                }
            });
            meta.Scan([Keys.Control], (key, value) =>
            {
                _records++;
                if (ControlKeys.CheckStored(key, value) is { } problem)
                {
                    Problem(problem);
                }

                return Tick();
            });
            Decode<VolumeRecord>(Keys.Volume, "volume", r =>
            {
                foreach (var id in r.Lineages.Append(r.Lineage))
                {
                    if (!lineageIds.Contains(id))
                    {
                        Problem($"volume {r.Name} lists a missing lineage {id}");
                    }
                }
            });
            return lineageIds;
        }

        /// <summary>A clone's parent lineage exists and still holds the snapshot the clone depends on.</summary>
        public void CheckLineageParents()
        {
            foreach (var lineage in pool._lineages.Values)
            {
                if (lineage.Record.ParentLineage == 0)
                {
                    continue;
                }

                if (!pool._lineages.TryGetValue(lineage.Record.ParentLineage, out var parent))
                {
                    Problem($"lineage {lineage.Id} has a missing parent {lineage.Record.ParentLineage}");
                }
                else if (!parent.Snapshots.TryGetValue(lineage.ParentEpoch, out var pin) || pin.State == SnapshotState.Deleting)
                {
                    Problem($"lineage {lineage.Id} depends on snapshot epoch {lineage.ParentEpoch} of lineage {parent.Id}, which is gone");
                }
            }
        }

        /// <summary>
        /// Every live map page: its size, no block born after its lineage's epoch, every mapped block
        /// referenced once; returns per lineage the blocks it maps and the parent blocks it hides.
        /// </summary>
        public Dictionary<uint, (long Own, long Overridden)> CheckLivePages(HashSet<uint> lineageIds)
        {
            var countedByLineage = new Dictionary<uint, (long Own, long Overridden)>();
            meta.Scan([Keys.LivePage], (key, value) =>
            {
                var lineage = Keys.ReadLineage(key);
                var page = Keys.ReadU64At(key, 5);
                if (!lineageIds.Contains(lineage))
                {
                    Problem($"map page {page} belongs to a missing lineage {lineage}");
                }

                if (value.Length != MapPage.Bytes)
                {
                    Problem($"map page {page} of lineage {lineage} has {value.Length} bytes");
                    return Tick();
                }

                var epoch = pool._lineages.TryGetValue(lineage, out var l) ? l.Record.Epoch : ulong.MaxValue;
                for (var i = 0; i < MapPage.BlocksPerPage; i++)
                {
                    var entry = MapEntry.Read(value[(i * MapEntry.Bytes)..]);
                    if (entry.Birth > epoch)
                    {
                        Problem($"block {(page << MapPage.PageShift) + (ulong)i} of lineage {lineage} was born in epoch {entry.Birth}, after the current {epoch}");
                    }

                    if (entry.IsMapped)
                    {
                        _mappedEntries++;
                        Reference(entry.Phys, $"lineage {lineage} block {(page << MapPage.PageShift) + (ulong)i}");
                    }

                    if (l is null)
                    {
                        continue;
                    }

                    var counts = countedByLineage.TryGetValue(lineage, out var c) ? c : default;
                    if (entry.IsMapped)
                    {
                        counts.Own++;
                    }

                    if (entry.Kind != EntryKind.Inherit && l.Parent is not null && l.ParentHasMapped((long)(page << MapPage.PageShift) + i))
                    {
                        counts.Overridden++;
                    }

                    countedByLineage[lineage] = counts;
                }

                return Tick();
            });
            return countedByLineage;
        }

        /// <summary>The durable allocation counters must match the durable map they were committed with.</summary>
        public void CheckCounters(Dictionary<uint, (long Own, long Overridden)> countedByLineage)
        {
            foreach (var lineage in pool._lineages.Values.Where(x => x.Record.State != LineageState.Deleting))
            {
                var stored = meta.Get(Keys.Prefix(Keys.Counters, lineage.Id));
                if (stored is not { Length: 16 })
                {
                    continue;
                }

                var own = System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(stored);
                var overridden = System.Buffers.Binary.BinaryPrimitives.ReadInt64BigEndian(stored.AsSpan(8));
                var actual = countedByLineage.TryGetValue(lineage.Id, out var a) ? a : default;
                if (own != actual.Own || overridden != actual.Overridden)
                {
                    Problem($"lineage {lineage.Id} counts {own} allocated and {overridden} hidden parent blocks, but its map has {actual.Own} and {actual.Overridden}");
                }
            }
        }

        /// <summary>Every history record has its death-index twin (and no more of those), and references its block.</summary>
        public void CheckHistory()
        {
            long deathRecords = 0;
            var other = new byte[Keys.HistoryKeyBytes];
            meta.Scan([Keys.History], (key, value) =>
            {
                _historyRecords++;
                var lineage = Keys.ReadLineage(key);
                var block = Keys.ReadU64At(key, 5);
                var death = Keys.ReadU64At(key, 13);
                var entry = MapEntry.Read(value);
                if (entry.Birth >= death)
                {
                    Problem($"history of lineage {lineage} block {block}: born {entry.Birth}, not before its death {death}");
                }

                Keys.WriteDeathKey(other, lineage, death, block);
                var twin = meta.Get(other);
                if (twin is null || !twin.AsSpan().SequenceEqual(value))
                {
                    Problem($"history of lineage {lineage} block {block} death {death} has no matching death-index record");
                }

                if (entry.IsMapped)
                {
                    Reference(entry.Phys, $"history of lineage {lineage} block {block} (died {death})");
                }

                return Tick();
            });
            meta.Scan([Keys.DeathIndex], (_, _) =>
            {
                deathRecords++;
                return Tick();
            });
            if (deathRecords != _historyRecords)
            {
                Problem($"{_historyRecords} history records but {deathRecords} death-index records");
            }
        }

        /// <summary>The committed bitmap as persisted, against what the map and history reference: no leak, no double use.</summary>
        public void CheckAllocation()
        {
            var committed = ReadCommittedBitmap();
            long leaked = 0, unaccounted = 0;
            for (var s = 0; s < _referenced.Length; s++)
            {
                for (var b = 0; b < _referenced[s].Length; b++)
                {
                    var r = _referenced[s][b];
                    var c = committed[s][b];
                    _used += r ? 1 : 0;
                    if (c && !r)
                    {
                        leaked++;
                        if (leaked <= 5)
                        {
                            Problem($"block {b} of store {s} is allocated but nothing references it (leak)");
                        }
                    }
                    else if (r && !c)
                    {
                        unaccounted++;
                        if (unaccounted <= 5)
                        {
                            Problem($"block {b} of store {s} is referenced but marked free (it could be used twice)");
                        }
                    }
                }
            }

            if (leaked > 5)
            {
                Problem($"{leaked} leaked blocks in all");
            }

            if (unaccounted > 5)
            {
                Problem($"{unaccounted} referenced blocks marked free in all");
            }
        }

        private BitArray[] ReadCommittedBitmap()
        {
            var committed = capacities.Select(c => new BitArray((int)Math.Min(c, int.MaxValue))).ToArray();
            meta.Scan([Keys.Bitmap], (key, value) =>
            {
                var store = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(key[1..]);
                var chunk = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(key[3..]);
                for (var bit = 0; bit < value.Length * 8; bit++)
                {
                    if ((value[bit >> 3] & (1 << (bit & 7))) == 0)
                    {
                        continue;
                    }

                    var block = ((long)chunk * Allocation.Allocator.ChunkBlocks) + bit;
                    if (store >= committed.Length || block >= capacities[store])
                    {
                        Problem($"the allocation bitmap marks block {block} of store {store}, outside the store");
                        continue;
                    }

                    committed[store][(int)block] = true;
                }

                return Tick();
            });
            return committed;
        }
    }
}

/// <summary>What <see cref="Pool.Verify"/> found: no problems means every invariant holds.</summary>
public sealed record VerifyReport(IReadOnlyList<string> Problems, long ReferencedBytes, long LiveMappedBlocks, long HistoryRecords, long ControlRecords)
{
    public bool IsClean => Problems.Count == 0;
}
