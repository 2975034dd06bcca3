using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>
/// Staging of an incoming stream: the stream is applied to the live replica volume, which nobody
/// else writes, while the replica's newest snapshot stays its last complete one. When a transfer
/// breaks off, what was applied is kept and its offset remembered so the sender resumes there; a
/// fresh transfer first discards any such leftovers. The offset is made durable every few seconds
/// while a transfer runs (flush, then its "receiving" record), so a transfer also resumes after
/// this server was killed. A complete stream is handed to <see cref="ReplicaCommit"/> (a group
/// member waits for its group's commit).
/// </summary>
internal sealed class StreamStaging(Pool pool, ReceiverBook book, ReplicaCommit commit, ReplicaReceiver receiver)
{
    /// <summary>See <see cref="ReplicaReceiver.Receive"/>.</summary>
    public StreamImportResult Receive(string volume, string partner, Stream body, long resumeOffset, bool reverse, string? group, long generation, bool discardWrites, string? divergedAfter, long changedGranules, CancellationToken cancellationToken)
    {
        var gate = book.EnterTransfer(volume);
        try
        {
            if (reverse)
            {
                receiver.CheckGeneration(volume, partner, generation);
            }

            CheckAccepts(volume, reverse);
            if (reverse && divergedAfter is not null && !discardWrites)
            {
                throw SplitBrain(volume, partner, divergedAfter, changedGranules);
            }

            // Read-only clients of a replica read its newest replicated snapshot; a client on the
            // live image (attached before the volume became a replica, or the home volume of a
            // fail-back) would see it change, or torn mid-transfer.
            receiver.ThrowIfAttached(volume, reverse ? $"failing back from {partner} into {volume}" : $"replicating from {partner} into {volume}");

            if (resumeOffset == 0)
            {
                // A fail-back keeps the volume's own changes (the import rolls back keeping them);
                // only a half-applied earlier attempt of it is discarded.
                if (!reverse || book.HasLeftovers(volume))
                {
                    DiscardLeftovers(volume, book.IsReplicaFrom(volume, partner));
                }
            }
            else if (book.Partial(volume) is not { Complete: false } partial || partial.AppliedOffset < resumeOffset || !pool.TryGetVolume(volume, out _))
            {
                // Resuming before the durable offset is fine (records of the same snapshot rewrite
                // the same blocks); beyond it would skip blocks never applied.
                throw new StorageException(StorageError.InvalidArgument, $"there is nothing to resume at offset {resumeOffset} in {volume}; start the transfer over");
            }

            return Apply(volume, partner, body, resumeOffset, reverse, group, generation, discardWrites, divergedAfter, cancellationToken);
        }
        finally
        {
            gate.Exit();
        }
    }

    private StreamImportResult Apply(string volume, string partner, Stream body, long resumeOffset, bool reverse, string? group, long generation, bool discardWrites, string? divergedAfter, CancellationToken cancellationToken)
    {
        // Every few seconds: flush what was applied, then record how far that is, so even a
        // kill -9 of this server lets the sender resume there instead of from the start.
        Guid? snapshotId = null;
        IncomingReplicaDto? committed = null;
        var savedAt = Environment.TickCount64;
        void SaveProgress(long applied)
        {
            if (snapshotId is not { } id || Environment.TickCount64 - savedAt < (long)ReplicaReceiver.SaveProgressEvery.TotalMilliseconds)
            {
                return;
            }

            pool.GetVolume(volume).Flush();
            book.SetPartial(volume, new PartialReceiveDto(id, applied));
            savedAt = Environment.TickCount64;
        }

        try
        {
            var result = SnapshotStreamReader.Import(pool, body, new StreamImportOptions
            {
                Volume = volume,
                KeepPartial = true,
                Resume = resumeOffset > 0,
                RollbackToBase = reverse && discardWrites,
                DeferSnapshot = group is not null,
                HeaderRead = header =>
                {
                    if (resumeOffset > 0 && book.TryGetPartial(volume, out var resuming) && resuming.SnapshotId != header.SnapshotId)
                    {
                        throw new StorageException(StorageError.InvalidArgument, $"the stream resumes snapshot {header.SnapshotName} ({header.SnapshotId}) but {volume} holds part of {resuming.SnapshotId}; start the transfer over");
                    }

                    snapshotId = header.SnapshotId;
                    if (resumeOffset == 0 && !header.IsIncremental)
                    {
                        // The volume was just made: recorded at once, so whatever happens next
                        // (even a kill -9) it is known as a half-received replica, not someone's data.
                        book.SetPartial(volume, new PartialReceiveDto(header.SnapshotId, 0));
                    }
                },
                Progress = SaveProgress,
                Bookkeeping = commit.Bookkeeping(volume, partner, generation, reverse, record => committed = record),
            }, cancellationToken);

            // A commit deleted the resume record already; a group member's waits for its group.
            book.ClearPartial(volume, save: group is not null);

            if (reverse && divergedAfter is not null && result.KeptState is null && result.Header.BaseSnapshotId is { } scanBaseId && pool.FindSnapshotById(volume, scanBaseId) is { } scanBase)
            {
                // The scan base holds this site's writes that the fail-back just overwrote.
                result = result with { KeptState = scanBase };
            }

            if (reverse)
            {
                book.SetPromoted(volume, false);
            }

            if (group is not null)
            {
                book.SetPending(volume, new PendingMember(group, result.Header, result, generation));
                return result;
            }

            commit.Finish(committed!, result.Header);
            return result;
        }
        catch (BaseChangedException ex) when (reverse && ex.BaseSnapshot is { } common)
        {
            // Split brain: this site also wrote after the snapshot both sides share. Resolving it
            // discards one side's writes, so only when the administrator says which.
            throw SplitBrain(volume, partner, common, null, ex);
        }
        catch (StreamImportException ex)
        {
            if (ex.AppliedOffset > 0 && ex.SnapshotId is { } failedId)
            {
                book.SetPartial(volume, new PartialReceiveDto(failedId, ex.AppliedOffset));
            }

            throw;
        }
    }

    /// <summary>
    /// Returns a replica to its newest complete snapshot: a half-applied transfer is rolled back, a
    /// half-made volume (its first transfer broke off, no snapshot yet) deleted. Only what this server
    /// knows it received is touched: a volume that is not a replica here (a seed, someone's data) is
    /// left alone, and a stream into it is refused or compared by hash scan instead.
    /// </summary>
    public void DiscardLeftovers(string volume, bool replica)
    {
        var had = book.ClearPartial(volume);
        had |= book.ClearPending(volume);
        if (!pool.TryGetVolume(volume, out _) || !(had || replica))
        {
            return;
        }

        if (book.NewestReplicated(volume) is not { } newest)
        {
            if (had)
            {
                pool.DeleteVolume(volume);
            }

            return;
        }

        if (pool.Diff(volume, newest.Name, null).Count > 0)
        {
            pool.Rollback(volume, newest.Name, keepCurrentState: false);
        }
    }

    /// <summary>
    /// A fail-back may enter a volume nobody writes (no read-write export); ordinary replication may
    /// not enter a replica promoted here.
    /// </summary>
    public void CheckAccepts(string volume, bool reverse)
    {
        if (reverse)
        {
            if (receiver.WritableExports(volume) is { Count: > 0 } exports)
            {
                throw new StorageException(StorageError.Busy, $"{volume} is exported read-write here ({string.Join(", ", exports)}); stop the application and delete those exports before failing back into it");
            }

            return;
        }

        if (book.IsPromoted(volume))
        {
            throw new StorageException(StorageError.ReadOnly, $"{volume} was promoted to a primary at this site; it no longer accepts replication (reverse the direction, or replicate into another volume)");
        }
    }

    /// <summary>
    /// A fail-back refused because this site wrote after <paramref name="common"/> (with a shared
    /// snapshot: found by the engine here; with a hash scan: <paramref name="changedGranules"/>
    /// granules found by the sender, -1 when it no longer has the common snapshot to compare with).
    /// </summary>
    private static SplitBrainException SplitBrain(string volume, string partner, string common, long? changedGranules, Exception? inner = null)
    {
        var (what, kept) = changedGranules switch
        {
            null => ($"{volume} was written here after {common}, the newest snapshot both sites share,", "pre-rollback"),
            < 0 => ($"{volume} here cannot be compared with the snapshot {partner} was promoted from (it has none left), so it may hold writes made after it,", "pre-failback"),
            { } n => ($"{volume} was written here after {common}, the last snapshot both sites shared ({n:N0} granules of 64 KiB differ from it; no longer kept here),", "pre-failback"),
        };
        var message = $"split brain: {what} and {partner} wrote to its copy too; failing back would revert this site's writes (they would be kept as a {kept}-... snapshot here); to do that, run 'tidemark replica reverse {volume} --discard-writes-at home' at {partner}";
        return inner is null ? new SplitBrainException(message) : new SplitBrainException(message, inner);
    }
}
