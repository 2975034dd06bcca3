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

    private readonly string _promotedPath;
    private readonly HashSet<string> _promoted = new(StringComparer.Ordinal);

    public ReplicaReceiver(Pool pool, string promotedPath)
    {
        _pool = pool;
        _promotedPath = promotedPath;
        if (File.Exists(promotedPath))
        {
            try
            {
                _promoted.UnionWith(System.Text.Json.JsonSerializer.Deserialize<List<string>>(File.ReadAllText(promotedPath), ServerSettings.FileJson) ?? []);
            }
            catch (System.Text.Json.JsonException ex)
            {
                throw new InvalidDataException($"{promotedPath} is not a valid list of promoted replicas ({ex.Message}); fix it or restore it from a backup", ex);
            }
        }
    }

    /// <summary>Replica volumes promoted to primaries here: no partner may write into them any more.</summary>
    public IReadOnlyList<string> Promoted
    {
        get
        {
            lock (_promoted)
            {
                return [.. _promoted.Order(StringComparer.Ordinal)];
            }
        }
    }

    /// <summary>
    /// Makes a replica a writable primary (at the DR site, also with the primary unreachable): any
    /// half-received transfer is discarded so the volume is exactly its newest complete snapshot, and
    /// incoming replication into it is refused from now on. Returns that snapshot.
    /// </summary>
    public SnapshotInfo Promote(string volume)
    {
        var gate = _locks.GetOrAdd(volume, _ => new Lock());
        lock (gate)
        {
            var snapshots = _pool.ListSnapshots(volume);
            if (snapshots.Count == 0)
            {
                throw new StorageException(StorageError.InvalidArgument, $"{volume} has no complete replicated snapshot yet; there is nothing consistent to promote");
            }

            DiscardLeftovers(volume);
            lock (_promoted)
            {
                _promoted.Add(volume);
                AtomicFile.WriteAllText(_promotedPath, System.Text.Json.JsonSerializer.Serialize(_promoted.Order(StringComparer.Ordinal).ToList(), ServerSettings.FileJson) + "\n");
            }

            return snapshots.MaxBy(s => s.CreatedAt)!;
        }
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
            lock (_promoted)
            {
                if (_promoted.Contains(volume))
                {
                    throw new StorageException(StorageError.ReadOnly, $"{volume} was promoted to a primary at this site; it no longer accepts replication (reverse the direction, or replicate into another volume)");
                }
            }

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
