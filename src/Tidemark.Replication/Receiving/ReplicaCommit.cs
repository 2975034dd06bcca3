using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;

namespace Tidemark.Replication;

/// <summary>
/// The commit at the receiver: a staged stream (or every member of a replicated group) becomes the
/// replica's new snapshot together with its bookkeeping (incoming record, no resume offset left,
/// promotion cleared by a fail-back) in one engine transaction, so a crash leaves the replica at its
/// old snapshot or at the new one, never between (ADR 0011). Then, outside the transaction, what
/// only follows from it: the records in memory, the seed's scan base dropped, read-only exports
/// moved to the new snapshot, retention.
/// </summary>
internal sealed class ReplicaCommit(Pool pool, ReceiverBook book, ReceiverRetention retention, ReplicaReceiver receiver)
{
    /// <summary>
    /// The bookkeeping of one stream's commit, called by the engine inside its transaction with the
    /// snapshot it creates; <paramref name="committed"/> receives the incoming record it wrote.
    /// </summary>
    public Func<StreamHeader, SnapshotInfo, ControlBatch> Bookkeeping(string volume, string partner, long generation, bool reverse, Action<IncomingReplicaDto> committed)
    {
        var before = book.FindIncoming(volume);
        return (header, snapshot) =>
        {
            var record = ReceiverBook.NextIncoming(before, volume, partner, header.Volume, snapshot, null, generation);
            committed(record);
            var batch = ReceiverBook.CommitRecords(new ControlBatch(), record, reverse);
            receiver.CommitFault("replica.commit");
            return batch;
        };
    }

    /// <summary>After a stream's commit is durable: the record in memory, the seed's scan base dropped, exports moved on, retention.</summary>
    public void Finish(IncomingReplicaDto record, StreamHeader header)
    {
        book.Committed(record);
        receiver.CommitFault("replica.committed");
        retention.DropScanBase(record.Volume, header);
        receiver.ImageChanged(record.Volume);
        retention.Prune(record.Volume);
    }

    /// <summary>See <see cref="ReplicaReceiver.CommitGroup"/>.</summary>
    public IReadOnlyList<SnapshotInfo> CommitGroup(string partner, GroupCommitRequest request)
    {
        if (request.Members.Count == 0)
        {
            throw new StorageException(StorageError.InvalidArgument, "a group commit needs its members");
        }

        var members = new List<(string Volume, string Name, Guid Id)>();
        var staged = new List<(string Volume, PendingMember Member)>();
        foreach (var member in request.Members)
        {
            if (!book.TryGetPending(member.Volume, out var pending) || pending.Group != request.Group || pending.Header.SnapshotId != member.SnapshotId)
            {
                throw new StorageException(StorageError.InvalidArgument, $"member {member.Volume} of group {request.Group} has not received snapshot {member.SnapshotId} completely; send it again");
            }

            members.Add((member.Volume, SnapshotStreamReader.UniqueName(pool, member.Volume, pending.Header.SnapshotName), member.SnapshotId));
            staged.Add((member.Volume, pending));
        }

        var before = staged.Select(s => book.FindIncoming(s.Volume)).ToList();
        var committed = new List<IncomingReplicaDto>();
        var snapshots = pool.SnapshotVolumesTogether(members, $"{request.Group}/{members[0].Name}", cut =>
        {
            // The members' incoming records go in the same commit as their snapshots (ADR 0011).
            var batch = new ControlBatch();
            for (var i = 0; i < cut.Count; i++)
            {
                var (volume, pending) = staged[i];
                var record = ReceiverBook.NextIncoming(before[i], volume, partner, pending.Header.Volume, cut[i], request.Group.Split('/')[0], pending.Generation);
                committed.Add(record);
                ReceiverBook.CommitRecords(batch, record, reverse: false);
            }

            receiver.CommitFault("replica.commit");
            return batch;
        });
        foreach (var record in committed)
        {
            book.Committed(record);
        }

        receiver.CommitFault("replica.committed");
        foreach (var (volume, pending) in staged)
        {
            book.ClearPending(volume);
            retention.DropScanBase(volume, pending.Header);
            receiver.ImageChanged(volume);
            retention.Prune(volume);
        }

        return snapshots;
    }
}
