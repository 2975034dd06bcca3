using System.Diagnostics;
using Tidemark.Api;
using Microsoft.Extensions.Logging;
using Tidemark.Engine;
using Tidemark.Engine.Control;
using Tidemark.Server.Events;
using EventLog = Tidemark.Server.Events.EventLog;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Agents;

/// <summary>
/// An application-consistent snapshot (ADR 0015): ask every host's agent to quiesce what sits on the
/// volumes, cut the snapshot (a group's members at one instant), ask them to resume, and record how
/// consistent the result is. If any agent cannot quiesce, those that did resume at once and the
/// fallback decides: "skip" (no snapshot, an error and an event) or "crash" (cut anyway, labelled
/// crash with the reason). A cut that did not finish within an agent's deadline, timed from before
/// the quiesce was sent, may postdate that agent's own resume: it is labelled crash too.
/// </summary>
public sealed class SnapshotCoordinator(Pool pool, HostRegistry hosts, ServerIdentity identity, EventLog events, ILogger logger, TimeProvider time)
{
    public const string FallbackCrash = "crash";
    public const string FallbackSkip = "skip";

    /// <summary>
    /// An agent that has not answered a quiesce or resume by then counts as failed (it resumes by
    /// itself at its deadline, and at once when the abandoned quiesce finishes). A minute: quiescing
    /// PostgreSQL waits for a checkpoint, which took over 10 s under pgbench on a loaded machine
    /// (bench/agent/pause.sh); the application is not paused while it waits.
    /// </summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The URLs the cut's volumes are exported under, sent with the quiesce so an agent finds their nbdfuse attachments; null: none sent.</summary>
    public Func<IReadOnlyList<string>, IReadOnlyList<VolumeAttachmentDto>>? Attachments { get; init; }

    public static string CheckFallback(string? fallback, string defaultValue) => (fallback ?? defaultValue) switch
    {
        FallbackCrash => FallbackCrash,
        FallbackSkip => FallbackSkip,
        _ => throw new StorageException(StorageError.InvalidArgument, $"fallback must be 'crash' (take the snapshot crash-consistent when an agent cannot quiesce) or 'skip' (take none), not '{fallback}'"),
    };

    public IReadOnlyList<HostRecord> CheckHosts(IReadOnlyList<string> names) => hosts.Resolve(names);

    /// <summary>The consistency of each snapshot id given, by id; absent ones are crash-consistent.</summary>
    public IReadOnlyDictionary<Guid, ConsistencyRecord> Consistencies()
    {
        var all = new Dictionary<Guid, ConsistencyRecord>();
        foreach (var (name, record) in pool.Control.List(ConsistencyRecord.Kind))
        {
            if (Guid.TryParseExact(name, "N", out var id))
            {
                all[id] = record;
            }
        }

        return all;
    }

    public ConsistencyRecord? ConsistencyOf(Guid id) => pool.Control.Get(ConsistencyRecord.Kind, id.ToString("N"));

    /// <summary>Longest consistency record a partner may send with a stream (its JSON, before base64).</summary>
    public const int MaxReplicatedLabelBytes = 16 * 1024;

    private static readonly System.Text.Json.JsonSerializerOptions _labelJson = new(ServerSettings.FileJson) { WriteIndented = false };

    /// <summary>
    /// The consistency record of a snapshot as sent with its replication stream (base64 of its JSON,
    /// ReplicaManager.ConsistencyHeader), or null when it has none (crash-consistent).
    /// </summary>
    public string? ReplicatedLabelOf(Guid id) =>
        ConsistencyOf(id) is { } record ? Convert.ToBase64String(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(record, _labelJson)) : null;

    /// <summary>
    /// Keeps at this site the consistency record a partner sent with the stream of snapshot
    /// <paramref name="id"/> (the copy has the same id), so a replicated application-consistent
    /// snapshot shows so at the DR site too (ADR 0015). Returns the problem, and keeps nothing, when
    /// the label is not base64 of a record with a known level; null when kept.
    /// </summary>
    public string? AdoptReplicatedLabel(Guid id, string label)
    {
        ConsistencyRecord? record;
        try
        {
            var bytes = Convert.FromBase64String(label);
            if (bytes.Length > MaxReplicatedLabelBytes)
            {
                return $"the consistency label is {bytes.Length} bytes, more than {MaxReplicatedLabelBytes}";
            }

            record = System.Text.Json.JsonSerializer.Deserialize<ConsistencyRecord>(bytes, _labelJson);
        }
        catch (Exception ex) when (ex is FormatException or System.Text.Json.JsonException)
        {
            return $"the consistency label does not parse ({ex.Message})";
        }

        if (record is null || record.Level is not (ConsistencyRecord.Crash or ConsistencyRecord.FileSystem or ConsistencyRecord.Application)
            || record.Detail is null || record.Hosts is null)
        {
            return $"the consistency label names no known level (crash, filesystem, application): {record?.Level ?? "none"}";
        }

        pool.Control.Put(ConsistencyRecord.Kind, id.ToString("N"), record);
        return null;
    }

    /// <summary>Cuts <paramref name="volume"/> or <paramref name="group"/> with <paramref name="hostNames"/> quiesced; see the class summary.</summary>
    public async Task<(IReadOnlyList<SnapshotInfo> Snapshots, ConsistencyRecord Consistency)> TakeAsync(
        string? volume, string? group, string? name, IReadOnlyList<string> hostNames, string fallback, string actor, CancellationToken ct)
    {
        var targets = hosts.Resolve(hostNames);
        var volumes = group is not null
            ? pool.Groups.FirstOrDefault(g => g.Name == group)?.Volumes ?? throw new StorageException(StorageError.NotFound, $"no group {group}; 'tidemark group list' shows them")
            : [pool.GetVolume(volume!).Name];
        var subject = group is not null ? $"group {group}" : volume!;
        var links = targets.Select(h => new AgentLink(identity, h, CallTimeout)).ToList();
        var request = new QuiesceRequest(volumes, Attachments: Attachments?.Invoke(volumes) is { Count: > 0 } attached ? attached : null);
        try
        {
            var started = Stopwatch.GetTimestamp();
            var quiesced = await Task.WhenAll(links.Select(async l =>
            {
                try
                {
                    return (Link: l, Result: await l.QuiesceAsync(request, ct), Error: (string?)null);
                }
                catch (StorageException ex)
                {
                    return (Link: l, Result: (QuiesceResultDto?)null, Error: ex.Message);
                }
            }));
            foreach (var q in quiesced)
            {
                RecordOutput(q.Link.Host, q.Result?.Output, actor);
                foreach (var r in q.Result?.Recovered ?? [])
                {
                    // The agent undid (or could not undo) what a killed run of it left: an operator must hear of it.
                    events.Record("agent.recovery", q.Link.Host, "agent", $"{r.Kind}: {r.Message}", r.Settled ? "ok" : "failed");
                }
            }

            var failed = quiesced.Where(q => q.Error is not null).ToList();
            IReadOnlyList<SnapshotInfo> snapshots;
            ConsistencyRecord consistency;
            if (failed.Count > 0)
            {
                // All resume: a partial quiesce is worth nothing and holds applications for no reason.
                await ResumeAllAsync(quiesced.Where(q => q.Result is not null).Select(q => (q.Link, q.Result!)).ToList());
                var reasons = string.Join("; ", failed.Select(f => f.Error));
                foreach (var f in failed)
                {
                    events.Record("agent.quiesce", f.Link.Host, actor, $"quiesce for a snapshot of {subject} failed: {f.Error}", "failed");
                }

                if (fallback == FallbackSkip)
                {
                    events.Record("snapshot.skip", subject, actor, $"no snapshot taken (fallback skip): {reasons}", "failed");
                    throw new SnapshotSkippedException($"snapshot of {subject} skipped: not every agent could quiesce ({reasons}); fix the agent, or take it with fallback crash", reasons);
                }

                snapshots = Cut(volume, group, name);
                consistency = new ConsistencyRecord(ConsistencyRecord.Crash, $"quiesce failed, taken crash-consistent: {reasons}", [.. targets.Select(t => t.Name)], null, time.GetUtcNow());
            }
            else
            {
                snapshots = Cut(volume, group, name);
                var cutWithin = Stopwatch.GetElapsedTime(started);
                var resumed = await ResumeAllAsync(quiesced.Select(q => (q.Link, q.Result!)).ToList());
                var late = quiesced.Where(q => cutWithin.TotalSeconds >= q.Result!.QuiesceSeconds + q.Result.DeadlineSeconds || resumed.TryGetValue(q.Link.Host, out var r) && r.Expired).Select(q => q.Link.Host).ToList();
                var paused = resumed.Count > 0 ? resumed.Values.Max(r => r.PausedSeconds) : (double?)null;
                var labels = resumed.SelectMany(r => (r.Value.BackupLabels ?? new Dictionary<string, string>()).Select(l => (Key: $"{r.Key}/{l.Key}", l.Value)))
                    .ToDictionary(l => l.Key, l => l.Value, StringComparer.Ordinal);
                consistency = late.Count > 0
                    ? new ConsistencyRecord(ConsistencyRecord.Crash, $"the cut took {cutWithin.TotalSeconds:0.###}s, past the deadline of {string.Join(", ", late)}, which resumed by itself", [.. targets.Select(t => t.Name)], paused, time.GetUtcNow())
                    : new ConsistencyRecord(
                        Level(quiesced.Select(q => q.Result!)),
                        string.Join("; ", quiesced.Select(q => $"{q.Link.Host}: {q.Result!.Detail}")),
                        [.. targets.Select(t => t.Name)],
                        paused,
                        time.GetUtcNow(),
                        labels.Count > 0 ? labels : null);
            }

            var batch = new ControlBatch();
            foreach (var s in snapshots)
            {
                batch.Put(ConsistencyRecord.Kind, s.Id.ToString("N"), consistency);
            }

            pool.Control.Update(batch);
            var where = group is not null ? $"{group}/{snapshots[0].Name}" : snapshots[0].Address;
            events.Record("snapshot.consistency", where, actor, consistency.Label, consistency.Level == ConsistencyRecord.Crash ? "fallback" : "ok");
            AgentsLog.SnapshotConsistency(logger, where, consistency.Label);
            return (snapshots, consistency);
        }
        finally
        {
            links.ForEach(l => l.Dispose());
        }
    }

    /// <summary>
    /// A snapshot cut with several hosts quiesced is only as consistent as the weakest of them (each
    /// host's answer already is the weakest of its own parts): one host's application never lifts
    /// another host's file systems. An agent that answered nothing known counts as crash.
    /// </summary>
    internal static string Level(IEnumerable<QuiesceResultDto> answers) =>
        ConsistencyLevel.Weakest(answers.Select(a => a.Consistency));

    private IReadOnlyList<SnapshotInfo> Cut(string? volume, string? group, string? name) =>
        group is not null ? pool.SnapshotGroup(group, name) : [pool.CreateSnapshot(volume!, name)];

    /// <summary>Resumes every quiesced agent; one that cannot be reached resumes at its deadline, so a failure here is logged, not fatal.</summary>
    private async Task<Dictionary<string, ResumeResultDto>> ResumeAllAsync(List<(AgentLink Link, QuiesceResultDto Result)> quiesced)
    {
        var answers = await Task.WhenAll(quiesced.Select(async q =>
        {
            try
            {
                return (q.Link.Host, Result: await q.Link.ResumeAsync(q.Result.Session, CancellationToken.None));
            }
            catch (StorageException ex)
            {
                AgentsLog.ResumeNotConfirmed(logger, q.Link.Host, ex.Message, q.Result.ResumeBy);
                events.Record("agent.resume", q.Link.Host, "server", $"resume not confirmed ({ex.Message}); the agent resumes by itself at {q.Result.ResumeBy:O}", "failed");
                return (q.Link.Host, Result: (ResumeResultDto?)null);
            }
        }));
        foreach (var (host, result) in answers)
        {
            RecordOutput(host, result?.Output, "server");
        }

        return answers.Where(a => a.Result is not null).ToDictionary(a => a.Host, a => a.Result!, StringComparer.Ordinal);
    }

    /// <summary>What a host's script hooks printed goes into the event log, one event per hook run.</summary>
    private void RecordOutput(string host, IReadOnlyList<string>? output, string actor)
    {
        foreach (var line in output ?? [])
        {
            events.Record("agent.script", host, actor, line.Length > 4096 ? line[..4096] : line, line.Contains(" (exit 0,", StringComparison.Ordinal) ? "ok" : "failed");
        }
    }
}

/// <summary>
/// A snapshot not taken because an agent could not quiesce and the fallback is skip: the API answers
/// it as before (502, <see cref="StorageError.Unavailable"/>); the replication cycle tells it apart
/// to skip its sync (<see cref="AgentReplicaCutter"/>). <see cref="Reasons"/> names each host's failure.
/// </summary>
public sealed class SnapshotSkippedException : StorageException
{
    public SnapshotSkippedException(string message, string reasons)
        : base(StorageError.Unavailable, message)
    {
        Reasons = reasons;
    }

    public SnapshotSkippedException(string message)
        : this(message, message)
    {
    }

    public SnapshotSkippedException(string message, Exception innerException)
        : base(StorageError.Unavailable, message, innerException)
    {
        Reasons = message;
    }

    public SnapshotSkippedException()
        : this("snapshot skipped: an agent could not quiesce")
    {
    }

    public string Reasons { get; }
}
