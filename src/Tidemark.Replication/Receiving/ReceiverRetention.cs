using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>
/// Retention at the receiver: the replica keeps its own number of replicated snapshots (never the
/// newest, a held, an exported or a client-read one), and a seed's scan base goes once the replica
/// has its first complete snapshot.
/// </summary>
internal sealed class ReceiverRetention(Pool pool, ReplicaReceiver receiver)
{
    /// <summary>
    /// Deletes the oldest replicated snapshots beyond the replica's retention: never the newest (the
    /// base of the next sync), a held one, an exported one, or one this site took itself (its own
    /// policies keep their own history). The replica's retention is this site's, not the source's.
    /// </summary>
    public void Prune(string volume)
    {
        var keep = receiver.FindIncoming(volume)?.KeepLast ?? ReplicaRetentionRequest.DefaultKeepLast;
        var newest = receiver.NewestReplicated(volume)?.Id;
        var replicated = pool.ListSnapshots(volume)
            .Where(s => s.Name.StartsWith(ReplicaManager.SnapshotPrefix, StringComparison.Ordinal) && s.Id != newest)
            .OrderByDescending(s => s.CreatedAt)
            .Skip(keep - 1)
            .ToList();
        foreach (var snapshot in replicated)
        {
            if (receiver.ExportsOfSnapshot(snapshot.Address).Count > 0 || receiver.HeldByClients(snapshot.Address))
            {
                // Exported, or a standby client still reads it (its export moved on): kept for now.
                continue;
            }

            try
            {
                pool.DeleteSnapshot(snapshot.Address);
            }
            catch (StorageException)
            {
                // Held (or otherwise kept by the engine): it stays.
            }
        }
    }

    /// <summary>Once a seeded replica has its first complete snapshot, the seed's scan base is of no further use.</summary>
    public void DropScanBase(string volume, StreamHeader header)
    {
        if (header.BaseSnapshotName is { } name && name.StartsWith(ReplicaReceiver.ScanBasePrefix, StringComparison.Ordinal) && pool.FindSnapshotById(volume, header.BaseSnapshotId!.Value) is { } scanBase)
        {
            try
            {
                pool.DeleteSnapshot(scanBase.Address);
            }
            catch (StorageException)
            {
                // Held or otherwise kept: it costs only the blocks the stream replaced.
            }
        }
    }
}
