using System.Collections.Concurrent;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// The replica's own retention of replicated snapshots, and dropping a scan base once it is no longer needed.
public sealed partial class ReplicaReceiver
{
    /// <summary>
    /// Sets how many replicated snapshots <paramref name="name"/> (a replica, or every member of a
    /// replicated group) keeps here, and prunes to it now.
    /// </summary>
    public IReadOnlyList<IncomingReplicaDto> SetRetention(string name, int keepLast)
    {
        if (keepLast < 1)
        {
            throw new StorageException(StorageError.InvalidArgument, $"a replica keeps at least its newest snapshot (--keep-last 1 or more), not {keepLast}");
        }

        IReadOnlyList<string> volumes = FindIncoming(name) is not null ? [name] : GroupMembers(name);
        if (volumes.Count == 0)
        {
            throw new StorageException(StorageError.NotFound, $"{name} is not a replica (or replicated group) received by this server; 'tidemark replica incoming' lists them");
        }

        lock (_incoming)
        {
            var batch = new Tidemark.Engine.Control.ControlBatch();
            foreach (var volume in volumes)
            {
                _incoming[volume] = _incoming[volume] with { KeepLast = keepLast };
                batch.Put(IncomingKind, volume, IncomingRecord.From(_incoming[volume]));
            }

            _pool.Control.Update(batch);
        }

        foreach (var volume in volumes)
        {
            Prune(volume);
        }

        return [.. volumes.Select(v => FindIncoming(v)!)];
    }

    /// <summary>
    /// Deletes the oldest replicated snapshots beyond the replica's retention: never the newest (the
    /// base of the next sync), a held one, an exported one, or one this site took itself (its own
    /// policies keep their own history). The replica's retention is this site's, not the source's.
    /// </summary>
    private void Prune(string volume)
    {
        var keep = FindIncoming(volume)?.KeepLast ?? ReplicaRetentionRequest.DefaultKeepLast;
        var newest = NewestReplicated(volume)?.Id;
        var replicated = _pool.ListSnapshots(volume)
            .Where(s => s.Name.StartsWith(ReplicaManager.SnapshotPrefix, StringComparison.Ordinal) && s.Id != newest)
            .OrderByDescending(s => s.CreatedAt)
            .Skip(keep - 1)
            .ToList();
        foreach (var snapshot in replicated)
        {
            if (ExportsOfSnapshot(snapshot.Address).Count > 0 || HeldByClients(snapshot.Address))
            {
                // Exported, or a standby client still reads it (its export moved on): kept for now.
                continue;
            }

            try
            {
                _pool.DeleteSnapshot(snapshot.Address);
            }
            catch (StorageException)
            {
                // Held (or otherwise kept by the engine): it stays.
            }
        }
    }

    /// <summary>Once a seeded replica has its first complete snapshot, the seed's scan base is of no further use.</summary>
    private void DropScanBase(string volume, StreamHeader header)
    {
        if (header.BaseSnapshotName is { } name && name.StartsWith(ScanBasePrefix, StringComparison.Ordinal) && _pool.FindSnapshotById(volume, header.BaseSnapshotId!.Value) is { } scanBase)
        {
            try
            {
                _pool.DeleteSnapshot(scanBase.Address);
            }
            catch (StorageException)
            {
                // Held or otherwise kept: it costs only the blocks the stream replaced.
            }
        }
    }
}
