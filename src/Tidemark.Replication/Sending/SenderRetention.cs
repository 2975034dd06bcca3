using Microsoft.Extensions.Logging;
using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>
/// Retention at the sender: the replication snapshots a sync no longer needs (the previous base
/// after a success, a refused or orphaned transfer's snapshots, a deleted replica's pending one) are
/// deleted, unless something else keeps them (a hold, a view, an export): then they stay, logged.
/// </summary>
internal sealed class SenderRetention(Pool pool, ILogger logger)
{
    /// <summary>Deletes snapshot <paramref name="name"/> of every member volume that still has it.</summary>
    public void DeleteFromMembers(IEnumerable<string> members, string name)
    {
        foreach (var member in members)
        {
            if (pool.TryGetVolume(member, out _) && pool.ListSnapshots(member).Any(s => s.Name == name))
            {
                Delete($"{member}@{name}");
            }
        }
    }

    public void Delete(string address)
    {
        try
        {
            pool.DeleteSnapshot(address);
        }
        catch (StorageException ex)
        {
            ReplicationLog.SnapshotKept(logger, address, ex.Message);
        }
    }
}
