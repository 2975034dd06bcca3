using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// One replication cycle: cut (or continue) the snapshots, send them with retries, then record the outcome.
public sealed partial class ReplicaManager
{
    /// <summary>One replication cycle of <paramref name="volume"/>: snapshot, diff against the newest common snapshot, send, resume on failure.</summary>
    public async Task<ReplicaDto> SyncAsync(string volume, OperationProgress? progress, CancellationToken cancellationToken)
    {
        ReplicaState state;
        lock (_book.Lock)
        {
            state = Find(volume);
            if (state.Suspended is { } why)
            {
                throw new StorageException(StorageError.InvalidArgument, $"replication of {volume} to {state.Partner} is suspended: {why}");
            }
        }

        var partner = _partners.Get(state.Partner);
        await _syncing.WaitAsync(cancellationToken);
        try
        {
            var started = _time.GetUtcNow();
            progress ??= new OperationProgress(cancellationToken);
            lock (_book.Lock)
            {
                state.Running = (progress, started); // 'replica show' says it syncs while the agents quiesce, too
            }

            var (cut, continued) = await CutOrContinueAsync(volume, state, started, cancellationToken);
            if (cut.Skipped is { } reasons)
            {
                throw RecordSkip(volume, state, partner, started, reasons);
            }

            var snapshots = cut.Snapshots;
            var outcome = await SendWithRetriesAsync(volume, state, partner, snapshots, new SyncProgress(progress), cancellationToken);
            return outcome.Failure is null
                ? RecordSuccess(volume, state, partner, cut, continued, started, outcome)
                : throw RecordFailure(volume, state, partner, snapshots, outcome);
        }
        finally
        {
            lock (_book.Lock)
            {
                state.Running = null;
                state.Retrying = null;
            }

            _syncing.Release();
        }
    }

    /// <summary>What the attempts of one sync did: the bytes of the one that succeeded, every attempt's wire bytes, and the last failure (null on success).</summary>
    private readonly record struct SyncOutcome(long Sent, long RangeBytes, long WireBytes, int Attempts, Exception? Failure);

    /// <summary>
    /// A transfer an earlier sync left unfinished (a bad link, this server killed) is continued: same
    /// snapshot, from the offset the partner durably applied, so every sync makes progress however
    /// often the link breaks. Otherwise a group is cut at one instant and sent member by member; the
    /// partner commits all the members' snapshots together only when every stream is in. A continued
    /// transfer keeps the consistency its cut had; a new cut goes through the replica's agents.
    /// </summary>
    private async Task<(ReplicaCut Cut, bool Continued)> CutOrContinueAsync(string volume, ReplicaState state, DateTimeOffset started, CancellationToken cancellationToken)
    {
        if (PendingSnapshots(state) is { } pending)
        {
            lock (_book.Lock)
            {
                return (new ReplicaCut(pending, state.PendingConsistency), true);
            }
        }

        var name = $"{SnapshotPrefix}{started.UtcDateTime:yyyyMMdd-HHmmss-fff}";
        var cut = await CutAsync(volume, state, name, cancellationToken);
        if (cut.Skipped is null)
        {
            lock (_book.Lock)
            {
                state.PendingSnapshot = name;
                state.PendingConsistency = cut.Consistency;
                _book.Save();
            }
        }

        return (cut, false);
    }

    /// <summary>
    /// Without hosts, the pool cuts at once (crash-consistent, as always). With hosts, the server's
    /// agents quiesce around the cut and the replica's fallback decides what a failed quiesce means.
    /// </summary>
    private Task<ReplicaCut> CutAsync(string volume, ReplicaState state, string name, CancellationToken cancellationToken)
    {
        List<string>? hosts;
        string? fallback;
        lock (_book.Lock)
        {
            (hosts, fallback) = (state.Hosts, state.Fallback);
        }

        if (hosts is { Count: > 0 })
        {
            var cutter = Cutter ?? throw new StorageException(StorageError.Unsupported, $"replica {volume} names hosts ({string.Join(", ", hosts)}) but this server has no agents to quiesce them");
            return cutter.CutAsync(new ReplicaCutRequest(volume, state.IsGroup, name, [.. hosts], fallback ?? DefaultFallback, $"replica:{volume}"), cancellationToken);
        }

        IReadOnlyList<SnapshotInfo> snapshots = state.IsGroup ? _pool.SnapshotGroup(volume, name) : [_pool.CreateSnapshot(volume, name)];
        return Task.FromResult(new ReplicaCut(snapshots, null));
    }

    /// <summary>
    /// An agent could not quiesce and the replica's fallback is skip: nothing was cut or sent. The
    /// replica's last error says why until a later sync (the next scheduled one, or 'replica sync') succeeds.
    /// </summary>
    private StorageException RecordSkip(string volume, ReplicaState state, PartnerDto partner, DateTimeOffset started, string reasons)
    {
        lock (_book.Lock)
        {
            state.LastError = $"sync of {started.UtcDateTime:yyyy-MM-dd HH:mm:ss}Z skipped (fallback skip): not every host could quiesce ({reasons}); the next sync tries again";
            _book.Save();
            _events(new ReplicationEvent("replica.sync", volume, $"replication to {partner.Name} skipped (fallback skip): not every host could quiesce ({reasons}); the replica keeps its last complete snapshot", "skipped"));
            return new StorageException(StorageError.Unavailable, $"replication of {volume} to {partner.Name} skipped: not every host could quiesce ({reasons}); the replica keeps its last complete snapshot {state.LastSnapshot ?? "(none yet)"}; fix the agent, or 'tidemark replica update {volume} --fallback crash'");
        }
    }

    /// <summary>
    /// Up to <see cref="MaxAttempts"/> attempts with exponential backoff for a broken link; a partner's
    /// decision (a refusal, a 4xx, an unknown server at the TLS handshake) ends the sync at once,
    /// because another attempt would get the same answer.
    /// </summary>
    private async Task<SyncOutcome> SendWithRetriesAsync(string volume, ReplicaState state, PartnerDto partner, IReadOnlyList<SnapshotInfo> snapshots, SyncProgress tracker, CancellationToken cancellationToken)
    {
        using var http = PartnerLink.Create(_identity, partner, Timeout.InfiniteTimeSpan);
        var wire = new WireCounter();
        var scans = new Dictionary<Guid, ScanPlan>();
        Exception? last = null;
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            try
            {
                var (sent, rangeBytes) = await SendAllAsync(http, state, snapshots, tracker, scans, wire, cancellationToken);
                return new SyncOutcome(sent, rangeBytes, wire.Bytes, attempt, null);
            }
            catch (PartnerRefusedException ex)
            {
                return new SyncOutcome(0, 0, wire.Bytes, attempt, ex);
            }
            catch (HttpRequestException ex) when ((int?)ex.StatusCode is >= 400 and < 500)
            {
                return new SyncOutcome(0, 0, wire.Bytes, attempt, ex);
            }
            catch (HttpRequestException ex) when (SyncFailure.IsRefusedHandshake(ex))
            {
                // Not a broken link: the partner does not know this server. Retrying cannot help.
                var refused = new PartnerRefusedException($"{partner.Name} refused the TLS handshake: it is not paired with this server; run 'tidemark partner add' there with fingerprint {_identity.Fingerprint}", ex);
                return new SyncOutcome(0, 0, wire.Bytes, attempt, refused);
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or StorageException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                last = ex;
                ReplicationLog.AttemptFailed(_logger, volume, partner.Name, attempt, ex.Message);
                if (attempt < MaxAttempts)
                {
                    // While it waits, the sync is not "100%, ETA 0": 'replica show' says it is retrying and why.
                    lock (_book.Lock)
                    {
                        state.Retrying = $"attempt {attempt} of {MaxAttempts} failed ({ex.Message}); retrying";
                    }

                    await Task.Delay(RetryDelay * (1 << (attempt - 1)), _time, cancellationToken);
                    lock (_book.Lock)
                    {
                        state.Retrying = null;
                    }
                }
            }
        }

        return new SyncOutcome(0, 0, wire.Bytes, MaxAttempts, last);
    }

    /// <summary>
    /// A broken link leaves the transfer to the next sync, which continues it. A refusal would only be
    /// refused again: its snapshots are dropped. Returns the error the sync fails with.
    /// </summary>
    private StorageException RecordFailure(string volume, ReplicaState state, PartnerDto partner, IReadOnlyList<SnapshotInfo> snapshots, SyncOutcome outcome)
    {
        var last = outcome.Failure!;
        lock (_book.Lock)
        {
            state.Retries += outcome.Attempts - 1;
            state.BytesSent += outcome.WireBytes; // every attempt's: the link carried them all
            if (SyncFailure.IsRefusal(last))
            {
                foreach (var failed in snapshots)
                {
                    _retention.Delete(failed.Address);
                }

                state.PendingSnapshot = null;
                state.PendingConsistency = null;
            }

            state.LastError = last.Message;
            _book.Save();
            var tries = outcome.Attempts == 1 ? "1 attempt" : $"{outcome.Attempts} attempts";
            _events(new ReplicationEvent("replica.sync", volume, $"replication to {partner.Name} failed after {tries}: {last.Message}; the replica keeps its last complete snapshot", "failed"));
            return new StorageException(StorageError.Unavailable, $"replicating {volume} to {partner.Name} failed after {tries} ({SyncFailure.Describe(last)}); the replica keeps its last complete snapshot {state.LastSnapshot ?? "(none yet)"}");
        }
    }

    /// <summary>The new snapshot becomes the replica's last one and the base of the next sync: the previous one is deleted.</summary>
    private ReplicaDto RecordSuccess(string volume, ReplicaState state, PartnerDto partner, ReplicaCut cut, bool continued, DateTimeOffset started, SyncOutcome outcome)
    {
        var snapshots = cut.Snapshots;
        var snapshot = snapshots[0];
        var retries = outcome.Attempts - 1;
        lock (_book.Lock)
        {
            state.Retries += retries;
            state.BytesSent += outcome.WireBytes; // every attempt's: the link carried them all
            var previous = state.LastSnapshot;
            state.PendingSnapshot = null;
            state.PendingConsistency = null;
            state.LastSnapshot = snapshot.Name;
            state.LastConsistency = cut.Consistency;
            state.LastSnapshotCreatedAt = snapshot.CreatedAt;
            state.LastSyncAt = _time.GetUtcNow();
            state.LastBytesSent = outcome.Sent;
            state.LastRangeBytes = outcome.RangeBytes;
            state.LastDurationSeconds = (state.LastSyncAt.Value - started).TotalSeconds;
            state.LastError = null;
            _book.Save();
            if (previous is not null && previous != snapshot.Name)
            {
                _retention.DeleteFromMembers(snapshots.Select(s => s.Volume), previous);
            }

            _events(new ReplicationEvent("replica.sync", volume, $"replicated {volume}@{snapshot.Name} to {partner.Name} as {state.RemoteVolume}{(continued ? " (continuing the transfer an earlier sync left unfinished)" : "")}: {outcome.Sent:N0} bytes on the wire for {outcome.RangeBytes:N0} bytes of changed ranges in {state.LastDurationSeconds:F1} s{(retries > 0 ? $" after {retries} retries" : "")}{(cut.Consistency is { } consistency ? $"; consistency: {consistency}" : "")}"));
            return ToDto(state);
        }
    }
}
