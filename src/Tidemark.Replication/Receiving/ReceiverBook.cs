using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;

namespace Tidemark.Replication;

/// <summary>
/// The receiving end's bookkeeping: which volumes are replicas of which partner (incoming records,
/// with their sequence and role generation), which were promoted here, the exports prepared for
/// them, how far interrupted transfers durably got, the group members waiting for their group's
/// commit, and the per-volume gate that lets one transfer, scan or role change at a time into a
/// volume. Kept in memory and as control records in the pool (ADR 0011), imported once from the
/// JSON files of older versions. Each record is written when it changes, one volume at a time; a
/// replication commit writes its records in the engine's own commit (<see cref="ReplicaCommit"/>).
/// </summary>
internal sealed class ReceiverBook
{
    private static readonly JsonSerializerOptions RecordJson = ReplicationJson.Records;

    private readonly Pool _pool;
    private readonly ConcurrentDictionary<string, PartialReceiveDto> _partial = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Lock> _locks = new(StringComparer.Ordinal);

    // Members of a replicated group whose whole stream is applied and verified, waiting for the
    // group's commit (in memory: a restart makes the sender send them again).
    private readonly ConcurrentDictionary<string, PendingMember> _pending = new(StringComparer.Ordinal);

    private readonly HashSet<string> _promoted = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, IncomingReplicaDto> _incoming = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, IReadOnlyList<CreateExportRequest>> _standby = new(StringComparer.Ordinal);

    /// <summary>Volumes replicated into this server, named by volume. Version 1: <see cref="IncomingRecord"/>.</summary>
    public static readonly ControlKind<IncomingRecord> IncomingKind = new("incoming", 1, json: RecordJson);

    /// <summary>How far interrupted transfers durably got, named by volume. Version 1: <see cref="ReceivingRecord"/>.</summary>
    public static readonly ControlKind<ReceivingRecord> ReceivingKind = new("receiving", 1, json: RecordJson);

    /// <summary>Exports prepared for incoming replicas, named by volume. Version 1: <see cref="StandbyRecord"/>.</summary>
    public static readonly ControlKind<StandbyRecord> StandbyKind = new("standby", 1, json: RecordJson);

    /// <summary>Replicas promoted here, named by volume. Version 1: <see cref="PromotedRecord"/>.</summary>
    public static readonly ControlKind<PromotedRecord> PromotedKind = new("promoted", 1, json: RecordJson);

    public ReceiverBook(Pool pool, ILogger logger, (string Promoted, string Incoming, string Receiving, string Standby) legacyPaths)
    {
        _pool = pool;
        Load(legacyPaths.Promoted, legacyPaths.Incoming, legacyPaths.Receiving, legacyPaths.Standby, logger);
    }

    /// <summary>
    /// Enters the gate of <paramref name="volume"/> (one transfer, scan, acceptance or role change at
    /// a time), or refuses: a sender retrying after a broken connection whose request this server
    /// has not finished yet succeeds a moment later, hence 503 (Closed), not 409.
    /// </summary>
    public Lock EnterTransfer(string volume)
    {
        var gate = Gate(volume);
        return gate.TryEnter()
            ? gate
            : throw new StorageException(StorageError.Closed, $"a transfer into {volume} is already running; try again when it ends");
    }

    /// <summary>The gate of <paramref name="volume"/>, to wait for (promotion, demotion) rather than be refused.</summary>
    public Lock Gate(string volume) => _locks.GetOrAdd(volume, _ => new Lock());

    public IReadOnlyList<IncomingReplicaDto> Incoming
    {
        get
        {
            lock (_incoming)
            {
                return [.. _incoming.Values.Select(WithPromoted)];
            }
        }
    }

    public IncomingReplicaDto? FindIncoming(string volume)
    {
        lock (_incoming)
        {
            return _incoming.TryGetValue(volume, out var record) ? WithPromoted(record) : null;
        }
    }

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

    public bool IsPromoted(string volume)
    {
        lock (_promoted)
        {
            return _promoted.Contains(volume);
        }
    }

    /// <summary>The members of a replicated group received here.</summary>
    public IReadOnlyList<string> GroupMembers(string group)
    {
        lock (_incoming)
        {
            return [.. _incoming.Values.Where(r => r.Group == group).Select(r => r.Volume)];
        }
    }

    /// <summary>See <see cref="ReplicaReceiver.NewestReplicated"/>.</summary>
    public SnapshotInfo? NewestReplicated(string volume)
    {
        if (!_pool.TryGetVolume(volume, out _))
        {
            return null;
        }

        var snapshots = _pool.ListSnapshots(volume);
        IncomingReplicaDto? record;
        lock (_incoming)
        {
            record = _incoming.GetValueOrDefault(volume);
        }

        if (record?.LastSnapshotId is { } id && snapshots.FirstOrDefault(s => s.Id == id) is { } byId)
        {
            return byId;
        }

        if (record?.LastSnapshot is { } name && snapshots.FirstOrDefault(s => s.Name == name) is { } byName)
        {
            return byName;
        }

        return snapshots.MaxBy(s => s.CreatedAt);
    }

    public long GenerationOf(string volume)
    {
        lock (_incoming)
        {
            return _incoming.TryGetValue(volume, out var record) ? record.Generation : 0;
        }
    }

    public void BumpGeneration(string volume)
    {
        lock (_incoming)
        {
            if (_incoming.TryGetValue(volume, out var record))
            {
                _incoming[volume] = record with { Generation = record.Generation + 1 };
                SaveIncoming(volume);
            }
        }
    }

    /// <summary>
    /// After a demotion: the replica is at <paramref name="target"/> (what 'replica incoming' shows
    /// is its state now), at the promoting side's generation when that is higher, so this side's
    /// older streams are refused.
    /// </summary>
    public void ReturnedTo(string volume, SnapshotInfo target, long? generation)
    {
        lock (_incoming)
        {
            if (_incoming.TryGetValue(volume, out var record))
            {
                _incoming[volume] = record with { LastSnapshot = target.Name, LastSnapshotCreatedAt = target.CreatedAt, LastSnapshotId = target.Id, Generation = Math.Max(record.Generation, generation ?? 0) };
                SaveIncoming(volume);
            }
        }
    }

    /// <summary>A volume just made a replica target (its record already committed with its kept snapshot).</summary>
    public void Accepted(IncomingReplicaDto record)
    {
        lock (_incoming)
        {
            _incoming[record.Volume] = record;
        }
    }

    /// <summary>Sets the retention of <paramref name="volumes"/> (all replicas here) in one control update.</summary>
    public void SetKeepLast(IReadOnlyList<string> volumes, int keepLast)
    {
        lock (_incoming)
        {
            var batch = new ControlBatch();
            foreach (var volume in volumes)
            {
                _incoming[volume] = _incoming[volume] with { KeepLast = keepLast };
                batch.Put(IncomingKind, volume, IncomingRecord.From(_incoming[volume]));
            }

            _pool.Control.Update(batch);
        }
    }

    public void SetPromoted(string volume, bool promoted)
    {
        lock (_promoted)
        {
            if (promoted == _promoted.Contains(volume))
            {
                return;
            }

            if (promoted)
            {
                _pool.Control.Put(PromotedKind, volume, new PromotedRecord(DateTimeOffset.UtcNow));
                _promoted.Add(volume);
            }
            else
            {
                _pool.Control.Delete(PromotedKind, volume);
                _promoted.Remove(volume);
            }
        }
    }

    /// <summary>The volume is a (not promoted) replica that <paramref name="partner"/> (any, when null) sends here.</summary>
    public bool IsReplicaFrom(string volume, string? partner)
    {
        lock (_incoming)
        {
            if (!_incoming.TryGetValue(volume, out var record) || (partner is not null && record.Partner != partner))
            {
                return false;
            }
        }

        return !IsPromoted(volume);
    }

    public IReadOnlyList<CreateExportRequest>? StandbyExportsOf(string volume)
    {
        lock (_standby)
        {
            return _standby.GetValueOrDefault(volume);
        }
    }

    /// <summary>Records the (checked) standby exports of <paramref name="volume"/>; none removes them.</summary>
    public void SetStandby(string volume, IReadOnlyList<CreateExportRequest> exports)
    {
        lock (_standby)
        {
            if (exports.Count == 0)
            {
                _pool.Control.Delete(StandbyKind, volume);
                _standby.Remove(volume);
            }
            else
            {
                _pool.Control.Put(StandbyKind, volume, new StandbyRecord([.. exports.Select(StandbyExportRecord.From)]));
                _standby[volume] = exports;
            }
        }
    }

    /// <summary>What an interrupted (or complete, waiting) transfer into <paramref name="volume"/> holds, or null.</summary>
    public PartialReceiveDto? Partial(string volume) =>
        _pending.TryGetValue(volume, out var pending) ? new PartialReceiveDto(pending.Header.SnapshotId, pending.Header.SizeBytes, Complete: true)
        : _partial.TryGetValue(volume, out var p) ? p : null;

    /// <summary>A transfer into <paramref name="volume"/> broke off (or is under way) with <paramref name="partial"/> durably applied.</summary>
    public void SetPartial(string volume, PartialReceiveDto partial)
    {
        _partial[volume] = partial;
        SavePartial(volume);
    }

    public bool TryGetPartial(string volume, out PartialReceiveDto partial) => _partial.TryGetValue(volume, out partial!);

    /// <summary>Forgets the resume offset of <paramref name="volume"/>; with <paramref name="save"/> also in the pool (a commit deletes the record itself). True when there was one.</summary>
    public bool ClearPartial(string volume, bool save = true)
    {
        var had = _partial.TryRemove(volume, out _);
        if (had && save)
        {
            SavePartial(volume);
        }

        return had;
    }

    public bool HasLeftovers(string volume) => _partial.ContainsKey(volume) || _pending.ContainsKey(volume);

    public void SetPending(string volume, PendingMember member) => _pending[volume] = member;

    public bool TryGetPending(string volume, out PendingMember member) => _pending.TryGetValue(volume, out member!);

    public bool ClearPending(string volume) => _pending.TryRemove(volume, out _);

    /// <summary>Takes a committed incoming record into memory (its records are durable already).</summary>
    public void Committed(IncomingReplicaDto record)
    {
        lock (_incoming)
        {
            // A retention set while the commit ran is kept (and saved again).
            var keepLast = _incoming.GetValueOrDefault(record.Volume)?.KeepLast;
            _incoming[record.Volume] = record with { KeepLast = keepLast };
            if (keepLast != record.KeepLast)
            {
                SaveIncoming(record.Volume);
            }
        }
    }

    /// <summary>
    /// The incoming record after <paramref name="snapshot"/> was committed into <paramref name="volume"/>:
    /// one more in the sequence, at the higher of both role generations. Pure: it is built inside the
    /// engine's commit (<see cref="CommitRecords"/>).
    /// </summary>
    public static IncomingReplicaDto NextIncoming(IncomingReplicaDto? before, string volume, string partner, string sourceVolume, SnapshotInfo snapshot, string? group, long generation) =>
        new(volume, partner, sourceVolume, snapshot.Name, snapshot.CreatedAt, DateTimeOffset.UtcNow, false, group, KeepLast: before?.KeepLast)
        {
            LastSnapshotId = snapshot.Id,
            Sequence = (before?.Sequence ?? 0) + 1,
            Generation = Math.Max(before?.Generation ?? 0, generation),
        };

    /// <summary>
    /// The control records of a replication commit, written in the same metadata batch as the
    /// snapshot they describe (ADR 0011): the replica's incoming record, and no resume offset left.
    /// </summary>
    public static ControlBatch CommitRecords(ControlBatch batch, IncomingReplicaDto record, bool reverse)
    {
        batch.Put(IncomingKind, record.Volume, IncomingRecord.From(record)).Delete(ReceivingKind, record.Volume);
        if (reverse)
        {
            // A fail-back makes a promoted volume a replica again, in the same commit.
            batch.Delete(PromotedKind, record.Volume);
        }

        return batch;
    }

    private IncomingReplicaDto WithPromoted(IncomingReplicaDto record) =>
        record with { Promoted = IsPromoted(record.Volume), StandbyExports = StandbyExportsOf(record.Volume) };

    private void Load(string promotedPath, string incomingPath, string partialPath, string standbyPath, ILogger logger)
    {
        var control = _pool.Control;
        LegacyStateFile.Migrate(
            control,
            StandbyKind,
            standbyPath,
            text => (JsonSerializer.Deserialize<Dictionary<string, List<StandbyExportRecord>>>(text, ReplicationJson.Records) ?? [])
                .Select(e => new KeyValuePair<string, StandbyRecord>(e.Key, new StandbyRecord(e.Value))),
            logger);
        LegacyStateFile.Migrate(control, ReceivingKind, partialPath, ParseOldPartials, logger);
        LegacyStateFile.Migrate(
            control,
            IncomingKind,
            incomingPath,
            text => (JsonSerializer.Deserialize<List<IncomingRecord>>(text, ReplicationJson.Records) ?? []).Select(r => new KeyValuePair<string, IncomingRecord>(r.Volume, r)),
            logger);
        LegacyStateFile.Migrate(
            control,
            PromotedKind,
            promotedPath,
            text => (JsonSerializer.Deserialize<List<string>>(text, ReplicationJson.Records) ?? []).Distinct(StringComparer.Ordinal).Select(v => new KeyValuePair<string, PromotedRecord>(v, new PromotedRecord(null))),
            logger);

        foreach (var (volume, record) in control.List(StandbyKind))
        {
            _standby[volume] = [.. record.Exports.Select(e => e.ToRequest())];
        }

        foreach (var (volume, record) in control.List(ReceivingKind))
        {
            // A volume deleted meanwhile has nothing left to resume into.
            if (_pool.TryGetVolume(volume, out _))
            {
                _partial[volume] = new PartialReceiveDto(record.SnapshotId, record.AppliedOffset);
            }
            else
            {
                control.Delete(ReceivingKind, volume);
            }
        }

        foreach (var (volume, record) in control.List(IncomingKind))
        {
            _incoming[volume] = record.ToDto();
        }

        _promoted.UnionWith(control.List(PromotedKind).Select(p => p.Key));
    }

    // Only an optimisation is lost with a damaged file of resume offsets: the next transfers start over.
    private static IEnumerable<KeyValuePair<string, ReceivingRecord>> ParseOldPartials(string text)
    {
        try
        {
            return [.. (JsonSerializer.Deserialize<Dictionary<string, ReceivingRecord>>(text, ReplicationJson.Records) ?? []).Select(e => new KeyValuePair<string, ReceivingRecord>(e.Key, e.Value))];
        }
        catch (JsonException)
        {
            return [];
        }
    }

    /// <summary>Writes the incoming record of <paramref name="volume"/> as it is in memory (or deletes it); the caller holds the lock on <see cref="_incoming"/>.</summary>
    private void SaveIncoming(string volume)
    {
        if (_incoming.TryGetValue(volume, out var record))
        {
            _pool.Control.Put(IncomingKind, volume, IncomingRecord.From(record));
        }
        else
        {
            _pool.Control.Delete(IncomingKind, volume);
        }
    }

    /// <summary>Writes how far the transfer into <paramref name="volume"/> durably got, or that none is left to resume.</summary>
    private void SavePartial(string volume)
    {
        if (_partial.TryGetValue(volume, out var partial))
        {
            _pool.Control.Put(ReceivingKind, volume, new ReceivingRecord(partial.SnapshotId, partial.AppliedOffset));
        }
        else
        {
            _pool.Control.Delete(ReceivingKind, volume);
        }
    }
}

/// <summary>A group member whose stream is applied and verified, waiting for its group's commit.</summary>
internal sealed record PendingMember(string Group, StreamHeader Header, StreamImportResult Result, long Generation);
