using System.Globalization;
using Tidemark.Engine.Control;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

public sealed partial class Pool
{
    /// <summary>
    /// Takes a snapshot of a volume: O(1) whatever its size. Writes acknowledged before the call are in
    /// it; it is durable when this returns.
    /// </summary>
    /// <summary>
    /// Snapshots a volume in O(1). <paramref name="id"/> gives the snapshot a known identity (a copy
    /// received from another pool keeps its source's, so both sides know which snapshots they share);
    /// by default it gets a new one.
    /// </summary>
    /// <param name="volumeName">The volume to cut.</param>
    /// <param name="snapshotName">Its name; "snap-..." when null.</param>
    /// <param name="id">Its id; a new one when null (an imported snapshot keeps its source's).</param>
    /// <param name="createdAt">Its time; now when null (an imported snapshot keeps the time it was taken at its source).</param>
    /// <param name="bookkeeping">
    /// Control records that say what the snapshot is (a replication commit's), given the snapshot:
    /// committed in the same atomic metadata batch, so after a crash both are there or neither. Called
    /// inside the commit: it must only build the batch (no pool calls, no locks), and must not throw.
    /// </param>
    public SnapshotInfo CreateSnapshot(string volumeName, string? snapshotName = null, Guid? id = null, DateTimeOffset? createdAt = null, Func<SnapshotInfo, ControlBatch>? bookkeeping = null)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var volume = GetVolume(volumeName);
            var name = snapshotName ?? UniqueSnapshotName(volume, "snap");
            Names.Check("snapshot", name);
            CheckSnapshotNameFree(volume, name);
            if (id is { } wanted && FindSnapshotById(volume, wanted) is { } existing)
            {
                throw new StorageException(StorageError.AlreadyExists, $"{volumeName} already has snapshot {existing.Name} with id {wanted}");
            }

            SnapshotRecord? record = null;
            volume.Gate.EnterExclusive();
            try
            {
                Commit(batch =>
                {
                    record = CutSnapshot(volume, volume.Lineage, name, null);
                    record.Id = id ?? record.Id;
                    record.CreatedAt = createdAt ?? record.CreatedAt;
                    PutSnapshot(batch, record);
                    PutLineage(batch, volume.Lineage);
                    bookkeeping?.Invoke(ToInfo(volume, record)).AddTo(batch);
                });
            }
            finally
            {
                volume.Gate.ExitExclusive();
            }

            return ToInfo(volume, record!);
        }
    }

    public IReadOnlyList<SnapshotInfo> ListSnapshots(string volumeName)
    {
        lock (_controlLock)
        {
            var volume = GetVolume(volumeName);
            return [.. volume.Record.Lineages
                .SelectMany(id => _lineages[id].Snapshots.Values)
                .Where(s => s.State == SnapshotState.Active)
                .OrderBy(s => s.CreatedAt)
                .ThenBy(s => s.Lineage)
                .ThenBy(s => s.Epoch)
                .Select(s => ToInfo(volume, s))];
        }
    }

    public SnapshotInfo GetSnapshot(string address)
    {
        var (volumeName, snapshotName) = Names.SplitSnapshot(address);
        lock (_controlLock)
        {
            var volume = GetVolume(volumeName);
            return ToInfo(volume, FindSnapshot(volume, snapshotName).Snapshot);
        }
    }

    /// <summary>A read-only block device of a snapshot, for read-only exports, copies and backup.</summary>
    public SnapshotDevice OpenSnapshot(string address)
    {
        var (volumeName, snapshotName) = Names.SplitSnapshot(address);
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var volume = GetVolume(volumeName);
            var (lineage, snapshot) = FindSnapshot(volume, snapshotName);
            return new SnapshotDevice(this, lineage, snapshot, volume.Name, volume.LogicalBlockSizeBytes);
        }
    }

    /// <summary>
    /// Deletes a snapshot and frees the blocks only it kept. Fails while it is on hold or a view
    /// depends on it; a snapshot a rolled-back volume or a promoted view still needs disappears from
    /// the list and its space is freed when nothing needs it any more.
    /// </summary>
    /// <summary>Deletes a snapshot and frees what only it kept; <paramref name="progress"/> follows the freeing (records of 2 per block).</summary>
    public void DeleteSnapshot(string address, OperationProgress? progress = null)
    {
        var (volumeName, snapshotName) = Names.SplitSnapshot(address);
        lock (_controlLock)
        {
            using var _ = Track(progress);
            ThrowIfUnusable();
            var volume = GetVolume(volumeName);
            var (lineage, snapshot) = FindSnapshot(volume, snapshotName);
            if (IsHeld(snapshot))
            {
                var until = snapshot.HoldUntil is { } u && u > Options.Clock() ? $" until {u:u}" : " until released";
                throw new StorageException(StorageError.Held, $"snapshot {address} is on hold{until}{(snapshot.HoldReason is null ? "" : $" ({snapshot.HoldReason})")}; it cannot be deleted");
            }

            var views = _volumes.Values
                .Where(v => v != volume && v.Kind == VolumeKind.View && v.Record.Lineages.Any(id => PinsSnapshot(_lineages[id], lineage, snapshot.Epoch)))
                .Select(v => v.Name)
                .ToList();
            if (views.Count > 0)
            {
                throw new StorageException(StorageError.HasDependents, $"views {string.Join(", ", views)} were created from {address}; delete or promote them first");
            }

            RemoveSnapshotLocked(lineage, snapshot, orphaned: false);
            CollectLineageIfUnused(lineage);
        }
    }

    /// <summary>
    /// Locks a snapshot against deletion: until <paramref name="until"/> (a dated hold that nobody can
    /// shorten), or, without a date, until <see cref="ReleaseHold"/>.
    /// </summary>
    public SnapshotInfo HoldSnapshot(string address, DateTimeOffset? until, string? reason = null)
    {
        var (volumeName, snapshotName) = Names.SplitSnapshot(address);
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var volume = GetVolume(volumeName);
            var (_, snapshot) = FindSnapshot(volume, snapshotName);
            if (until is { } date)
            {
                if (date <= Options.Clock())
                {
                    throw new StorageException(StorageError.InvalidArgument, $"a hold until {date:u} is already over; give a future date");
                }

                // A dated hold may be extended, never shortened.
                if (snapshot.HoldUntil is null || date > snapshot.HoldUntil)
                {
                    snapshot.HoldUntil = date;
                }
            }
            else
            {
                snapshot.Held = true;
            }

            snapshot.HoldReason = reason ?? snapshot.HoldReason;
            Commit(batch => PutSnapshot(batch, snapshot));
            return ToInfo(volume, snapshot);
        }
    }

    /// <summary>Releases an indefinite hold. A dated hold stays until its date.</summary>
    public SnapshotInfo ReleaseHold(string address)
    {
        var (volumeName, snapshotName) = Names.SplitSnapshot(address);
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var volume = GetVolume(volumeName);
            var (_, snapshot) = FindSnapshot(volume, snapshotName);
            snapshot.Held = false;
            if (snapshot.HoldUntil is null || snapshot.HoldUntil <= Options.Clock())
            {
                snapshot.HoldReason = null;
            }

            Commit(batch => PutSnapshot(batch, snapshot));
            return ToInfo(volume, snapshot);
        }
    }

    // ---- groups ----

    public IReadOnlyList<GroupInfo> Groups
    {
        get
        {
            lock (_controlLock)
            {
                return [.. _groups.Values.OrderBy(g => g.Name, StringComparer.Ordinal).Select(ToInfo)];
            }
        }
    }

    public GroupInfo CreateGroup(string name, IReadOnlyList<string> volumeNames)
    {
        Names.Check("group", name);
        lock (_controlLock)
        {
            ThrowIfUnusable();
            if (_groups.ContainsKey(name))
            {
                throw new StorageException(StorageError.AlreadyExists, $"a group named '{name}' already exists");
            }

            if (volumeNames.Count == 0 || volumeNames.Distinct().Count() != volumeNames.Count)
            {
                throw new StorageException(StorageError.InvalidArgument, "a group needs one or more distinct volumes");
            }

            var record = new GroupRecord { Name = name, CreatedAt = Options.Clock(), Members = [.. volumeNames.Select(n => GetVolume(n).Id)] };
            Commit(batch => batch.Put(Keys.GroupKey(name), RecordCodec.Encode(record)));
            _groups.Add(name, record);
            return ToInfo(record);
        }
    }

    public void DeleteGroup(string name)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            if (!_groups.Remove(name))
            {
                throw new StorageException(StorageError.NotFound, $"no group named '{name}'");
            }

            Commit(batch => batch.Delete(Keys.GroupKey(name)));
        }
    }

    /// <summary>
    /// One snapshot of every member at one instant: I/O on all members pauses, in-flight writes drain,
    /// and all the snapshots are recorded in one metadata transaction.
    /// </summary>
    public IReadOnlyList<SnapshotInfo> SnapshotGroup(string groupName, string? snapshotName = null)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            if (!_groups.TryGetValue(groupName, out var group))
            {
                throw new StorageException(StorageError.NotFound, $"no group named '{groupName}'");
            }

            var members = group.Members
                .Select(id => _volumes.TryGetValue(id, out var v) ? v : throw new StorageException(StorageError.NotFound, $"a member of group {groupName} was deleted; update the group"))
                .OrderBy(v => v.Id)
                .ToList();
            var name = snapshotName ?? UniqueSnapshotName(members, groupName);
            return CutTogether([.. members.Select(m => (m, name, (Guid?)null))], $"{groupName}/{name}");
        }
    }

    /// <summary>
    /// Snapshots several volumes at one instant, each with the given name and identity, in one
    /// metadata transaction: a replicated group's members are committed together this way (the
    /// receiving pool need not have the group itself).
    /// </summary>
    /// <param name="bookkeeping">As for <see cref="CreateSnapshot"/>: records for the new snapshots (in the order of <paramref name="members"/>), committed with them.</param>
    public IReadOnlyList<SnapshotInfo> SnapshotVolumesTogether(IReadOnlyList<(string Volume, string Name, Guid Id)> members, string label, Func<IReadOnlyList<SnapshotInfo>, ControlBatch>? bookkeeping = null)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var resolved = members.Select(m => (GetVolume(m.Volume), m.Name, (Guid?)m.Id)).OrderBy(m => m.Item1.Id).ToList();
            if (resolved.Select(m => m.Item1.Id).Distinct().Count() != resolved.Count)
            {
                throw new StorageException(StorageError.InvalidArgument, "a volume appears twice among the members");
            }

            foreach (var (volume, _, id) in resolved)
            {
                if (FindSnapshotById(volume, id!.Value) is { } existing)
                {
                    throw new StorageException(StorageError.AlreadyExists, $"{volume.Name} already has snapshot {existing.Name} with id {id}");
                }
            }

            return CutTogether(resolved, label, bookkeeping is null ? null : cut => bookkeeping([.. members.Select(m => cut.First(c => c.Volume == m.Volume))]));
        }
    }

    // Caller holds the control lock. Pauses I/O on every member, drains in-flight writes, records all the snapshots in one commit.
    private List<SnapshotInfo> CutTogether(List<(Volume Volume, string Name, Guid? Id)> members, string label, Func<IReadOnlyList<SnapshotInfo>, ControlBatch>? bookkeeping = null)
    {
        {
            foreach (var (member, name, _) in members)
            {
                Names.Check("snapshot", name);
                CheckSnapshotNameFree(member, name);
            }

            var records = new List<(Volume, SnapshotRecord)>();
            var entered = new List<Volume>();
            try
            {
                foreach (var (member, _, _) in members)
                {
                    member.Gate.EnterExclusive();
                    entered.Add(member);
                }

                Commit(batch =>
                {
                    foreach (var (member, name, id) in members)
                    {
                        var record = CutSnapshot(member, member.Lineage, name, label);
                        record.Id = id ?? record.Id;
                        PutSnapshot(batch, record);
                        PutLineage(batch, member.Lineage);
                        records.Add((member, record));
                    }

                    bookkeeping?.Invoke([.. records.Select(r => ToInfo(r.Item1, r.Item2))]).AddTo(batch);
                });
            }
            finally
            {
                foreach (var member in entered)
                {
                    member.Gate.ExitExclusive();
                }
            }

            return [.. records.Select(r => ToInfo(r.Item1, r.Item2))];
        }
    }

    // ---- helpers ----

    private SnapshotRecord CutSnapshot(Volume volume, Lineage lineage, string name, string? groupSnapshot)
    {
        var epoch = lineage.CutEpoch();
        var record = new SnapshotRecord
        {
            Lineage = lineage.Id,
            Epoch = epoch,
            Volume = volume.Id,
            Name = name,
            CreatedAt = Options.Clock(),
            SizeBytes = volume.SizeBytes,
            GroupSnapshot = groupSnapshot,
            MappedBlocks = lineage.MappedBlocks,
            Id = Guid.NewGuid(),
        };
        lineage.Snapshots.Add(epoch, record);
        return record;
    }

    private (Lineage Lineage, SnapshotRecord Snapshot) FindSnapshot(Volume volume, string snapshotName)
    {
        foreach (var id in volume.Record.Lineages)
        {
            var lineage = _lineages[id];
            foreach (var snapshot in lineage.Snapshots.Values)
            {
                if (snapshot.State == SnapshotState.Active && snapshot.Name == snapshotName)
                {
                    return (lineage, snapshot);
                }
            }
        }

        throw new StorageException(StorageError.NotFound, $"volume {volume.Name} has no snapshot named '{snapshotName}'; 'tidemark snapshot list {volume.Name}' shows them");
    }

    private void CheckSnapshotNameFree(Volume volume, string name)
    {
        if (volume.Record.Lineages.Any(id => _lineages[id].Snapshots.Values.Any(s => s.State == SnapshotState.Active && s.Name == name)))
        {
            throw new StorageException(StorageError.AlreadyExists, $"volume {volume.Name} already has a snapshot named '{name}'");
        }
    }

    private string UniqueSnapshotName(Volume volume, string prefix) => UniqueSnapshotName([volume], prefix);

    private string UniqueSnapshotName(IReadOnlyList<Volume> volumes, string prefix)
    {
        var stamp = Options.Clock().UtcDateTime.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        var name = $"{prefix}-{stamp}";
        for (var n = 2; volumes.Any(v => v.Record.Lineages.Any(id => _lineages[id].Snapshots.Values.Any(s => s.State == SnapshotState.Active && s.Name == name))); n++)
        {
            name = $"{prefix}-{stamp}-{n}";
        }

        return name;
    }

    private bool IsHeld(SnapshotRecord snapshot) => snapshot.Held || (snapshot.HoldUntil is { } until && until > Options.Clock());

    private static bool PinsSnapshot(Lineage candidate, Lineage lineage, ulong epoch) =>
        candidate.Parent == lineage && candidate.ParentEpoch == epoch && candidate.Record.State != LineageState.Deleting;

    private bool IsPinned(Lineage lineage, ulong epoch)
    {
        lock (_lineages)
        {
            return _lineages.Values.Any(l => PinsSnapshot(l, lineage, epoch));
        }
    }

    private SnapshotInfo ToInfo(Volume volume, SnapshotRecord s) =>
        new(
            volume.Name,
            s.Name,
            s.CreatedAt,
            s.SizeBytes,
            s.Held,
            s.HoldUntil,
            s.HoldReason,
            s.GroupSnapshot,
            s.Lineage,
            s.Epoch)
        {
            Id = SnapshotId(s),
        };

    /// <summary>A snapshot's identity; one made before ids existed gets a stable one derived from the pool, lineage and epoch.</summary>
    private Guid SnapshotId(SnapshotRecord s)
    {
        if (s.Id != Guid.Empty)
        {
            return s.Id;
        }

        Span<byte> seed = stackalloc byte[28];
        Id.TryWriteBytes(seed);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(seed[16..], s.Lineage);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(seed[20..], s.Epoch);
        Span<byte> hash = stackalloc byte[32];
        System.Security.Cryptography.SHA256.HashData(seed, hash);
        return new Guid(hash[..16]);
    }

    /// <summary>The snapshot of <paramref name="volumeName"/> with identity <paramref name="id"/>, or null.</summary>
    public SnapshotInfo? FindSnapshotById(string volumeName, Guid id)
    {
        lock (_controlLock)
        {
            ThrowIfUnusable();
            var volume = GetVolume(volumeName);
            return FindSnapshotById(volume, id) is { } record ? ToInfo(volume, record) : null;
        }
    }

    private SnapshotRecord? FindSnapshotById(Volume volume, Guid id) =>
        volume.Record.Lineages
            .SelectMany(l => _lineages[l].Snapshots.Values)
            .FirstOrDefault(s => s.State == SnapshotState.Active && SnapshotId(s) == id);

    private GroupInfo ToInfo(GroupRecord g) =>
        new(g.Name, [.. g.Members.Select(id => _volumes.TryGetValue(id, out var v) ? v.Name : $"(deleted {id})")], g.CreatedAt);
}

/// <summary>A snapshot as the engine's callers see it; <see cref="Id"/> is stable, also across pools for replicated copies.</summary>
public sealed record SnapshotInfo(
    string Volume,
    string Name,
    DateTimeOffset CreatedAt,
    long SizeBytes,
    bool Held,
    DateTimeOffset? HoldUntil,
    string? HoldReason,
    string? GroupSnapshot,
    uint Lineage,
    ulong Epoch)
{
    public string Address => $"{Volume}@{Name}";

    public Guid Id { get; init; }
}

public sealed record GroupInfo(string Name, IReadOnlyList<string> Volumes, DateTimeOffset CreatedAt);
