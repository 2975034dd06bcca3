using System.Collections.Concurrent;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// Setting the replica's own retention; ReceiverRetention applies it.
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
            _retention.Prune(volume);
        }

        return [.. volumes.Select(v => FindIncoming(v)!)];
    }
}
