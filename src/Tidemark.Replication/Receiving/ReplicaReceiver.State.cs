using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine.Control;

namespace Tidemark.Replication;

// What the receiving end keeps durably: control records in the pool (ADR 0011), imported once from
// the JSON files of older versions. Each record is written when it changes, one volume at a time; a
// replication commit writes its records in the engine's own commit (ReplicaReceiver.Commit.cs).
public sealed partial class ReplicaReceiver
{
    private static readonly JsonSerializerOptions RecordJson = ReplicationJson.Records;

    /// <summary>Volumes replicated into this server, named by volume. Version 1: <see cref="IncomingRecord"/>.</summary>
    public static readonly ControlKind<IncomingRecord> IncomingKind = new("incoming", 1, json: RecordJson);

    /// <summary>How far interrupted transfers durably got, named by volume. Version 1: <see cref="ReceivingRecord"/>.</summary>
    public static readonly ControlKind<ReceivingRecord> ReceivingKind = new("receiving", 1, json: RecordJson);

    /// <summary>Exports prepared for incoming replicas, named by volume. Version 1: <see cref="StandbyRecord"/>.</summary>
    public static readonly ControlKind<StandbyRecord> StandbyKind = new("standby", 1, json: RecordJson);

    /// <summary>Replicas promoted here, named by volume. Version 1: <see cref="PromotedRecord"/>.</summary>
    public static readonly ControlKind<PromotedRecord> PromotedKind = new("promoted", 1, json: RecordJson);

    private void LoadState(string promotedPath, string incomingPath, string partialPath, string standbyPath, ILogger logger)
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
