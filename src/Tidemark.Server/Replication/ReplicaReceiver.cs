using System.Collections.Concurrent;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Replication;

namespace Tidemark.Server.Replication;

/// <summary>
/// The receiving end of replication (on the partner-only listener). A stream is applied to the live
/// replica volume, which nobody else writes; the replica's newest snapshot is always a complete one.
/// When a transfer breaks off, what was applied is kept and its offset remembered so the sender
/// resumes there; a fresh transfer first discards any such leftovers. (The offset lives in memory: a
/// restart of this server makes the next transfer start over, which is correct, only slower.)
/// </summary>
public sealed class ReplicaReceiver
{
    private readonly Pool _pool;
    private readonly ConcurrentDictionary<string, PartialReceiveDto> _partial = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Lock> _locks = new(StringComparer.Ordinal);

    public ReplicaReceiver(Pool pool)
    {
        _pool = pool;
    }

    public IReadOnlyList<RemoteSnapshotDto> Snapshots(string volume) =>
        _pool.TryGetVolume(volume, out _)
            ? [.. _pool.ListSnapshots(volume).Select(s => new RemoteSnapshotDto(s.Id, s.Name, s.CreatedAt))]
            : [];

    public PartialReceiveDto? Partial(string volume) => _partial.TryGetValue(volume, out var p) ? p : null;

    public StreamImportResult Receive(string volume, Stream body, long resumeOffset, CancellationToken cancellationToken)
    {
        var gate = _locks.GetOrAdd(volume, _ => new Lock());
        if (!gate.TryEnter())
        {
            throw new StorageException(StorageError.Busy, $"a transfer into {volume} is already running");
        }

        try
        {
            if (resumeOffset == 0)
            {
                DiscardLeftovers(volume);
            }
            else if (Partial(volume) is not { } partial || partial.AppliedOffset != resumeOffset)
            {
                throw new StorageException(StorageError.InvalidArgument, $"there is nothing to resume at offset {resumeOffset} in {volume}; start the transfer over");
            }

            try
            {
                var result = SnapshotStreamReader.Import(_pool, body, new StreamImportOptions { Volume = volume, KeepPartial = true, Resume = resumeOffset > 0 }, cancellationToken);
                _partial.TryRemove(volume, out _);
                return result;
            }
            catch (StreamImportException ex)
            {
                var id = PeekSnapshotId(ex);
                if (ex.AppliedOffset > 0 && id is { } snapshotId)
                {
                    _partial[volume] = new PartialReceiveDto(snapshotId, ex.AppliedOffset);
                }

                throw;
            }
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>The snapshot a failed import was for (kept on the exception's data by the reader).</summary>
    private static Guid? PeekSnapshotId(StreamImportException ex) => ex.Data["snapshotId"] as Guid?;

    // A fresh transfer starts from the replica's newest complete snapshot: a half-made volume (no
    // snapshot yet) is deleted, a half-applied increment rolled back without keeping it.
    private void DiscardLeftovers(string volume)
    {
        _partial.TryRemove(volume, out _);
        if (!_pool.TryGetVolume(volume, out _))
        {
            return;
        }

        var snapshots = _pool.ListSnapshots(volume);
        if (snapshots.Count == 0)
        {
            _pool.DeleteVolume(volume);
            return;
        }

        var newest = snapshots.MaxBy(s => s.CreatedAt)!;
        if (_pool.Diff(volume, newest.Name, null).Count > 0)
        {
            _pool.Rollback(volume, newest.Name, keepCurrentState: false);
        }
    }
}
