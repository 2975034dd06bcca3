using RocksDbSharp;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

public sealed partial class Pool
{
    public const long MaxVolumeBytes = 1L << 50; // 1 PiB: far below the map's addressing limit

    public IReadOnlyList<Volume> Volumes
    {
        get
        {
            lock (_controlLock)
            {
                return [.. _volumes.Values.OrderBy(v => v.Name, StringComparer.Ordinal)];
            }
        }
    }

    public Volume GetVolume(string name) =>
        TryGetVolume(name, out var volume)
            ? volume
            : throw new StorageException(StorageError.NotFound, $"no volume or view named '{name}'; 'tidemark volume list' shows them");

    public bool TryGetVolume(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Volume? volume)
    {
        lock (_controlLock)
        {
            volume = _volumes.Values.FirstOrDefault(v => v.Name == name);
            return volume is not null;
        }
    }

    /// <summary>Creates a thin volume: no space is used until it is written.</summary>
    public Volume CreateVolume(string name, long sizeBytes, int logicalBlockSize = 512)
    {
        Names.Check("volume", name);
        if (logicalBlockSize is not (512 or 4096))
        {
            throw new StorageException(StorageError.InvalidArgument, $"the logical block size must be 512 or 4096, not {logicalBlockSize}");
        }

        CheckSize(sizeBytes, logicalBlockSize);
        lock (_controlLock)
        {
            ThrowIfUnusable();
            CheckNameFree(name);
            var record = new VolumeRecord
            {
                Id = Guid.NewGuid(),
                Name = name,
                Kind = VolumeKind.Volume,
                SizeBytes = sizeBytes,
                LogicalBlockSize = logicalBlockSize,
                CreatedAt = Options.Clock(),
            };
            var lineage = NewLineage(record.Id, parent: null, parentEpoch: 0);
            record.Lineage = lineage.Id;
            record.Lineages.Add(lineage.Id);
            Commit(batch =>
            {
                PutPoolRecord(batch);
                PutLineage(batch, lineage);
                PutVolume(batch, record);
            });
            var volume = new Volume(this, record, lineage);
            _volumes.Add(record.Id, volume);
            return volume;
        }
    }

    /// <summary>Creates a writable view of a snapshot: a new volume that shares every block until written.</summary>
    public Volume CreateView(string snapshotAddress, string viewName)
    {
        Names.Check("view", viewName);
        var (volumeName, snapshotName) = Names.SplitSnapshot(snapshotAddress);
        lock (_controlLock)
        {
            ThrowIfUnusable();
            CheckNameFree(viewName);
            var source = GetVolume(volumeName);
            var (lineage, snapshot) = FindSnapshot(source, snapshotName);
            var record = new VolumeRecord
            {
                Id = Guid.NewGuid(),
                Name = viewName,
                Kind = VolumeKind.View,
                SizeBytes = snapshot.SizeBytes,
                LogicalBlockSize = source.LogicalBlockSizeBytes,
                CreatedAt = Options.Clock(),
                Origin = $"{volumeName}@{snapshotName}",
            };
            var viewLineage = NewLineage(record.Id, lineage, snapshot.Epoch);
            record.Lineage = viewLineage.Id;
            record.Lineages.Add(viewLineage.Id);
            Commit(batch =>
            {
                PutPoolRecord(batch);
                PutLineage(batch, viewLineage);
                PutVolume(batch, record);
            });
            var view = new Volume(this, record, viewLineage);
            _volumes.Add(record.Id, view);
            return view;
        }
    }

    /// <summary>Makes a view a volume in its own right: its source snapshot and volume can then be deleted.</summary>
    public void PromoteView(string viewName)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var view = GetVolume(viewName);
            if (view.Kind != VolumeKind.View)
            {
                throw new StorageException(StorageError.InvalidArgument, $"{viewName} is already a volume");
            }

            view.Record.Kind = VolumeKind.Volume;
            Commit(batch => PutVolume(batch, view.Record));
        }
    }

    /// <summary>Grows a volume's virtual size (online; frontends are told through SizeChanged).</summary>
    public void ResizeVolume(string name, long newSizeBytes)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var volume = GetVolume(name);
            CheckSize(newSizeBytes, volume.LogicalBlockSizeBytes);
            if (newSizeBytes < volume.SizeBytes)
            {
                throw new StorageException(StorageError.InvalidArgument, $"{name} is {ByteSize.Format(volume.SizeBytes)}; shrinking would cut off data, so only growing is allowed");
            }

            if (newSizeBytes == volume.SizeBytes)
            {
                return;
            }

            volume.Gate.EnterExclusive();
            try
            {
                volume.Record.SizeBytes = newSizeBytes;
                Commit(batch => PutVolume(batch, volume.Record));
            }
            finally
            {
                volume.Gate.ExitExclusive();
            }

            volume.RaiseSizeChanged();
        }
    }

    /// <summary>
    /// Makes the live image of a volume equal to a snapshot, at once and without copying data. The
    /// snapshots newer than it stay, and the live state before the rollback is kept as a snapshot
    /// named "pre-rollback-..." so nothing is lost. The volume takes the snapshot's size.
    /// </summary>
    /// <remarks>
    /// With <paramref name="keepCurrentState"/> false the live state is discarded instead of kept as a
    /// snapshot (an interrupted import or replication throws away what it half-wrote this way).
    /// </remarks>
    public SnapshotInfo? Rollback(string volumeName, string snapshotName, bool keepCurrentState = true)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var volume = GetVolume(volumeName);
            var (target, snapshot) = FindSnapshot(volume, snapshotName);
            SnapshotInfo? kept = null;
            var current = volume.Lineage;
            var sizeBefore = volume.SizeBytes;
            volume.Gate.EnterExclusive();
            try
            {
                SnapshotRecord? keptRecord = null;
                var next = NewLineage(volume.Id, target, snapshot.Epoch);
                Commit(batch =>
                {
                    if (keepCurrentState)
                    {
                        keptRecord = CutSnapshot(volume, current, UniqueSnapshotName(volume, "pre-rollback"), null);
                        PutSnapshot(batch, keptRecord);
                    }

                    current.Record.State = LineageState.Frozen;
                    PutLineage(batch, current);
                    volume.Record.Lineage = next.Id;
                    volume.Record.Lineages.Add(next.Id);
                    volume.Record.SizeBytes = snapshot.SizeBytes; // the image as it was, size included
                    PutPoolRecord(batch);
                    PutLineage(batch, next);
                    PutVolume(batch, volume.Record);
                });
                volume.SwitchLineage(next);
                if (keptRecord is not null)
                {
                    kept = ToInfo(volume, keptRecord);
                }
            }
            finally
            {
                volume.Gate.ExitExclusive();
            }

            if (sizeBefore != volume.SizeBytes)
            {
                volume.RaiseSizeChanged();
            }

            if (!keepCurrentState)
            {
                // What the discarded live state wrote after the frozen lineage's newest snapshot is seen
                // by nobody now: free it (its history keeps the snapshot images exact meanwhile).
                var seers = current.Snapshots.Values.Where(x => x.State != SnapshotState.Deleting).Select(x => x.Epoch).DefaultIfEmpty(0UL).Max();
                TrimLive(current, seers);
                CollectLineageIfUnused(current);
            }

            return kept;
        }
    }

    /// <summary>
    /// Deletes a volume or view and frees its space. A volume with views of its snapshots cannot be
    /// deleted until they are deleted or promoted; a promoted view keeps what it needs.
    /// </summary>
    /// <summary>Deletes a volume or view with its snapshots; <paramref name="progress"/> counts the metadata records freed (no total is known ahead).</summary>
    public void DeleteVolume(string name, OperationProgress? progress = null)
    {
        lock (_controlLock)
        {
            using var _ = Track(progress);
            ThrowIfUnusable();
            var volume = GetVolume(name);
            var dependents = ViewsDependingOn(volume).Where(v => v.Kind == VolumeKind.View).Select(v => v.Name).ToList();
            if (dependents.Count > 0)
            {
                throw new StorageException(StorageError.HasDependents, $"views {string.Join(", ", dependents)} depend on snapshots of {name}; delete or promote them first");
            }

            var held = volume.Record.Lineages.Select(id => _lineages[id])
                .SelectMany(l => l.Snapshots.Values)
                .Where(s => s.State != SnapshotState.Deleting && IsHeld(s))
                .Select(s => s.Name)
                .ToList();
            if (held.Count > 0)
            {
                throw new StorageException(StorageError.Held, $"snapshots {string.Join(", ", held)} of {name} are on hold; the volume cannot be deleted before the holds end");
            }

            volume.Gate.EnterExclusive();
            try
            {
                volume.MarkDeleted();
                foreach (var id in volume.Record.Lineages)
                {
                    _lineages[id].Record.State = _lineages[id].Record.State == LineageState.Active ? LineageState.Frozen : _lineages[id].Record.State;
                }

                Commit(batch =>
                {
                    batch.Delete(Keys.VolumeKey(volume.Id));
                    foreach (var id in volume.Record.Lineages)
                    {
                        _lineages[id].Record.Volume = Guid.Empty;
                        PutLineage(batch, _lineages[id]);
                    }
                });
                _volumes.Remove(volume.Id);
            }
            finally
            {
                volume.Gate.ExitExclusive();
            }

            // Newest lineage first: a rolled-back lineage is released once nothing depends on it.
            foreach (var id in Enumerable.Reverse(volume.Record.Lineages).ToList())
            {
                if (!_lineages.TryGetValue(id, out var lineage))
                {
                    continue; // released already, as the parent of a newer lineage
                }

                foreach (var snapshot in lineage.Snapshots.Values.Where(s => s.State == SnapshotState.Active).ToList())
                {
                    RemoveSnapshotLocked(lineage, snapshot, orphaned: true);
                }

                CollectLineageIfUnused(lineage);
            }
        }
    }

    private IEnumerable<Volume> ViewsDependingOn(Volume volume)
    {
        var own = volume.Record.Lineages.ToHashSet();
        return _volumes.Values.Where(v => v != volume && v.Record.Lineages.Any(id => DependsOn(_lineages[id], own)));
    }

    private static bool DependsOn(Lineage lineage, HashSet<uint> ancestors)
    {
        for (var p = lineage.Parent; p is not null; p = p.Parent)
        {
            if (ancestors.Contains(p.Id))
            {
                return true;
            }
        }

        return false;
    }

    private void CheckNameFree(string name)
    {
        if (_volumes.Values.Any(v => v.Name == name))
        {
            throw new StorageException(StorageError.AlreadyExists, $"a volume or view named '{name}' already exists; choose another name");
        }
    }

    private static void CheckSize(long sizeBytes, int logicalBlockSize)
    {
        if (sizeBytes <= 0 || sizeBytes > MaxVolumeBytes)
        {
            throw new StorageException(StorageError.InvalidArgument, $"a volume size must be between 1 block and {ByteSize.Format(MaxVolumeBytes)}, not {sizeBytes} bytes");
        }

        if (sizeBytes % logicalBlockSize != 0)
        {
            throw new StorageException(StorageError.Misaligned, $"a volume size must be a multiple of its {logicalBlockSize}-byte block size; {sizeBytes} is not");
        }
    }
}
