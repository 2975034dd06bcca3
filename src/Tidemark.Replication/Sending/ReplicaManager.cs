using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;

namespace Tidemark.Replication;

/// <summary>
/// The sending end: volumes replicated to partners (control records in the pool, <see cref="Kind"/>). A sync takes a replication
/// snapshot, asks the partner which snapshots its replica has, and sends only what changed since the
/// newest one both sides have (a full stream the first time) over the mutual-TLS link. A broken
/// transfer is retried with backoff and resumes at the offset the partner durably reached. After a
/// success the previous replication snapshot is deleted: the newest one is the base of the next sync
/// and is protected from policies meanwhile.
/// </summary>
public sealed partial class ReplicaManager : IDisposable
{
    public const string SnapshotPrefix = "repl-";
    public const int MaxAttempts = 6;

    /// <summary>zstd level of replication streams unless a replica says otherwise.</summary>
    public const int DefaultCompressionLevel = 3;

    /// <summary>
    /// A replica whose agent cannot quiesce sends a crash-consistent snapshot, labelled so, unless it
    /// says "skip": like a policy's run, a cycle nobody watches, where a DR copy falling behind is
    /// worse than one that is crash-consistent (ADR 0015).
    /// </summary>
    public const string DefaultFallback = "crash";

    private readonly Pool _pool;
    private readonly ReplicaReceiver _receiver;
    private readonly PartnerRegistry _partners;
    private readonly ServerIdentity _identity;
    private readonly Action<ReplicationEvent> _events;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ReplicaBook _book;
    private readonly SemaphoreSlim _syncing = new(1, 1);
    private readonly SyncPlanner _planner;
    private readonly SnapshotSender _sender;
    private readonly SenderRetention _retention;
    private readonly FailBack _failBack;

    /// <param name="legacyPath">DATA/replicas.json of an older version: imported into the pool, then renamed NAME.migrated.</param>
    public ReplicaManager(Pool pool, ReplicaReceiver receiver, PartnerRegistry partners, ServerIdentity identity, Action<ReplicationEvent> events, TimeProvider time, ILogger logger, string legacyPath)
    {
        _pool = pool;
        _receiver = receiver;
        _partners = partners;
        _identity = identity;
        _events = events;
        _time = time;
        _logger = logger;
        _planner = new SyncPlanner(pool, receiver);
        _sender = new SnapshotSender(pool, receiver, time);
        _retention = new SenderRetention(pool, logger);
        _book = new ReplicaBook(pool, Kind);
        _failBack = new FailBack(pool, receiver, partners, identity, _book, _retention, events, SyncAsync, BringUpStandby);
        LegacyStateFile.Migrate(
            pool.Control,
            Kind,
            legacyPath,
            text => (JsonSerializer.Deserialize<List<ReplicaState>>(text, ReplicationJson.Records) ?? []).Select(r => new KeyValuePair<string, ReplicaState>(r.Volume, r)),
            logger);
        foreach (var (volume, state) in pool.Control.List(Kind))
        {
            _book.Replicas[volume] = state;
        }
    }

    /// <summary>
    /// Volumes and groups replicated to partners, as control records in the pool (ADR 0011), named by
    /// volume or group. Version 1: <see cref="ReplicaState"/>'s saved properties.
    /// </summary>
    internal static readonly ControlKind<ReplicaState> Kind = new("replica", 1, json: ReplicationJson.Records);

    /// <summary>When a snapshot policy last snapshotted a volume or group (for replicas that follow policy snapshots).</summary>
    public Func<string, DateTimeOffset?> LastPolicySnapshot { get; set; } = _ => null;

    /// <summary>Brings up an export (the standby exports of a promoted replica).</summary>
    public Func<CreateExportRequest, ExportDto>? CreateExport { get; set; }

    /// <summary>Cuts a cycle's snapshot through the agents of a replica that names hosts (the server's, over its SnapshotCoordinator); null: no agents here.</summary>
    public IReplicaSnapshotCutter? Cutter { get; set; }

    /// <summary>
    /// A snapshot's consistency record as this site keeps it (the server's, opaque here), sent with its
    /// stream so the partner shows the same consistency for its copy; null for none (crash).
    /// </summary>
    public Func<Guid, string?>? SnapshotLabel
    {
        get => _sender.SnapshotLabel;
        set => _sender.SnapshotLabel = value;
    }

    /// <summary>The request header that carries <see cref="SnapshotLabel"/> to the partner.</summary>
    public const string ConsistencyHeader = SnapshotSender.ConsistencyHeader;

    /// <summary>Backoff between attempts; tests shorten it.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    public IReadOnlyList<ReplicaDto> List()
    {
        lock (_book.Lock)
        {
            return [.. _book.Replicas.Values.Select(ToDto)];
        }
    }

    public ReplicaDto Get(string volume)
    {
        lock (_book.Lock)
        {
            return ToDto(Find(volume));
        }
    }

    /// <summary>A reason to keep <paramref name="address"/> (the base of the next sync), or null.</summary>
    public string? Protects(string address)
    {
        lock (_book.Lock)
        {
            if (_book.Replicas.Values.FirstOrDefault(r => r.PendingSnapshot is { } p && _book.Members(r).Any(m => $"{m}@{p}" == address)) is { } sending)
            {
                return $"replica {sending.Volume} -> {sending.Partner} is sending it (the next sync continues that transfer)";
            }

            return _book.Replicas.Values.FirstOrDefault(r => r.LastSnapshot is { } s && _book.Members(r).Any(m => $"{m}@{s}" == address)) is { } replica
                ? $"it is the newest snapshot replica {replica.Volume} -> {replica.Partner} shares, the base of its next sync"
                : null;
        }
    }

    public ReplicaDto Create(CreateReplicaRequest request)
    {
        // A group replicates as one unit: its name in place of a volume's.
        var isGroup = !_pool.TryGetVolume(request.Volume, out _) && _pool.Groups.Any(g => g.Name == request.Volume);
        if (!isGroup)
        {
            if (!_pool.TryGetVolume(request.Volume, out _))
            {
                throw new StorageException(StorageError.NotFound, $"no volume or group named '{request.Volume}'");
            }
        }
        else if (request.RemoteVolume is { } other && other != request.Volume)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{request.Volume} is a group: its members keep their names at the partner, so --as does not apply");
        }

        _partners.Get(request.Partner);
        var hosts = CheckAgents(request.Hosts, request.Fallback);
        lock (_book.Lock)
        {
            if (_book.Replicas.TryGetValue(request.Volume, out var existing))
            {
                throw new StorageException(StorageError.AlreadyExists, $"{request.Volume} is already replicated to {existing.Partner}");
            }

            SyncSchedule.CheckEvery(request.Every);
            ReplicaRequestChecks.CheckBandwidth(request.Bandwidth);
            ReplicaRequestChecks.CheckStandby(request.StandbyExports);
            ReplicaRequestChecks.CheckLevel(request.CompressionLevel);
            var state = new ReplicaState { Volume = request.Volume, Partner = request.Partner, RemoteVolume = request.RemoteVolume ?? request.Volume, Every = request.Every, Bandwidth = request.Bandwidth, IsGroup = isGroup, AfterPolicySnapshots = request.AfterPolicySnapshots, Seed = request.Seed, StandbyExports = request.StandbyExports?.ToList(), CompressionLevel = request.CompressionLevel ?? DefaultCompressionLevel, Hosts = hosts, Fallback = request.Fallback };
            _book.Replicas[state.Volume] = state;
            _book.Save();
            return ToDto(state);
        }
    }

    /// <summary>Changes the schedule, the bandwidth limit, compression, standby exports or agents; it applies from the next sync.</summary>
    public ReplicaDto Update(string volume, UpdateReplicaRequest request)
    {
        var every = Off(request.Every);
        var bandwidth = Off(request.Bandwidth);
        SyncSchedule.CheckEvery(every);
        ReplicaRequestChecks.CheckBandwidth(bandwidth);
        ReplicaRequestChecks.CheckStandby(request.StandbyExports);
        ReplicaRequestChecks.CheckLevel(request.CompressionLevel);
        var hosts = CheckAgents(request.Hosts, request.Fallback);
        lock (_book.Lock)
        {
            var state = Find(volume);
            if (request.Hosts is not null)
            {
                state.Hosts = hosts; // an empty list: no agents any more
            }

            if (request.Fallback is not null)
            {
                state.Fallback = request.Fallback;
            }

            if (request.CompressionLevel is { } level)
            {
                state.CompressionLevel = level;
            }

            if (request.StandbyExports is not null)
            {
                state.StandbyExports = [.. request.StandbyExports]; // sent to the partner with the next sync
            }

            if (request.Every is not null)
            {
                state.Every = every;
            }

            if (request.Bandwidth is not null)
            {
                state.Bandwidth = bandwidth;
            }

            _book.Save();
            return ToDto(state);
        }

        static string? Off(string? value) => string.Equals(value, "off", StringComparison.OrdinalIgnoreCase) ? null : value;
    }

    /// <summary>Refuses to remove a host that a replica quiesces, naming the replica.</summary>
    public void ThrowIfHostUsed(string host)
    {
        lock (_book.Lock)
        {
            var names = _book.Replicas.Values.Where(r => r.Hosts?.Contains(host, StringComparer.Ordinal) == true).Select(r => r.Volume).ToList();
            if (names.Count > 0)
            {
                throw new StorageException(StorageError.HasDependents, $"replicas {string.Join(", ", names)} quiesce host {host}; change them first ('tidemark replica update VOLUME --hosts ...')");
            }
        }
    }

    public void Delete(string volume)
    {
        lock (_book.Lock)
        {
            var state = Find(volume);
            _book.Replicas.Remove(volume);
            _book.Save();
            if (state.PendingSnapshot is { } pending)
            {
                _retention.DeleteFromMembers(_book.Members(state), pending);
            }
        }
    }

    /// <summary>
    /// The snapshots of a transfer an earlier sync of <paramref name="state"/> left unfinished, when
    /// they all still exist; otherwise null (and any that remain are deleted: no base for anything).
    /// </summary>
    private IReadOnlyList<SnapshotInfo>? PendingSnapshots(ReplicaState state)
    {
        if (state.PendingSnapshot is not { } name)
        {
            return null;
        }

        var members = _book.Members(state).ToList();
        var found = members.Select(m => _pool.TryGetVolume(m, out _) ? _pool.ListSnapshots(m).FirstOrDefault(s => s.Name == name) : null).ToList();
        if (members.Count > 0 && found.All(s => s is not null))
        {
            return [.. found.OfType<SnapshotInfo>()];
        }

        foreach (var orphan in found.OfType<SnapshotInfo>())
        {
            _retention.Delete(orphan.Address);
        }

        lock (_book.Lock)
        {
            state.PendingSnapshot = null;
            state.PendingConsistency = null;
            _book.Save();
        }

        return null;
    }

    /// <summary>
    /// The hosts to save (null: none) once the server said they exist and the fallback is crash or
    /// skip. Both need the agents' side of the server: without it (<see cref="Cutter"/> null) they are refused.
    /// </summary>
    private List<string>? CheckAgents(IReadOnlyList<string>? hosts, string? fallback)
    {
        if (hosts is null && fallback is null)
        {
            return null;
        }

        if (Cutter is null)
        {
            throw new StorageException(StorageError.Unsupported, "this server has no agents to quiesce hosts around replication snapshots");
        }

        Cutter.Check(hosts ?? [], fallback);
        return hosts is { Count: > 0 } ? [.. hosts.Distinct(StringComparer.Ordinal)] : null;
    }

    private ReplicaState Find(string volume) =>
        _book.Replicas.TryGetValue(volume, out var state)
            ? state
            : throw new StorageException(StorageError.NotFound, $"{volume} is not replicated; 'tidemark replica create {volume} --to PARTNER' starts it");

    private ReplicaDto ToDto(ReplicaState s) => new(
        s.Volume,
        s.Partner,
        s.RemoteVolume,
        s.LastSnapshot,
        s.LastSyncAt,
        s.LastSnapshotCreatedAt is { } at ? (_time.GetUtcNow() - at).TotalSeconds : null,
        s.BytesSent,
        s.LastBytesSent,
        s.LastRangeBytes,
        s.LastDurationSeconds,
        s.Retries,
        s.LastError,
        s.Every,
        SyncSchedule.NextSync(s),
        s.Reverse ? "reverse" : s.Suspended is null ? "active" : "suspended",
        s.Suspended,
        s.Bandwidth,
        s.IsGroup ? [.. _book.Members(s)] : null,
        s.AfterPolicySnapshots,
        s.Seed,
        s.LastScannedBytes,
        s.StandbyExports,
        s.LastBytesSent > 0 && s.LastRangeBytes > 0 ? Math.Round((double)s.LastRangeBytes / s.LastBytesSent, 2) : null,
        s.Running is var (progress, started) ? Syncing(progress, started, s.Retrying) : null,
        s.CompressionLevel,
        s.DiscardedWrites,
        Hosts: s.Hosts,
        Fallback: s.Hosts is { Count: > 0 } ? s.Fallback ?? DefaultFallback : s.Fallback,
        LastConsistency: s.LastSnapshot is null ? null : s.LastConsistency ?? ConsistencyLevel.Crash);

    private ReplicaSyncProgressDto Syncing(OperationProgress progress, DateTimeOffset started, string? retrying)
    {
        var total = progress.Total;
        var done = progress.Done;
        if (retrying is not null)
        {
            // What the sender wrote into the link is not what the partner applied: between attempts
            // neither a percentage nor an ETA is known until the partner says where to resume.
            return new ReplicaSyncProgressDto(started, done, total, null, null, retrying);
        }

        return new ReplicaSyncProgressDto(started, done, total, total is > 0 ? Math.Round(Math.Min(100, 100.0 * done / total.Value), 1) : null, progress.EtaSeconds(_time.GetUtcNow() - started));
    }

    /// <summary>Volumes whose automatic sync is due at <paramref name="now"/> (the scheduler starts them as jobs).</summary>
    public IReadOnlyList<string> Due(DateTimeOffset now)
    {
        lock (_book.Lock)
        {
            return [.. _book.Replicas.Values.Where(r => SyncSchedule.IsDue(r, now, r.AfterPolicySnapshots ? LastPolicySnapshot(r.Volume) : null)).Select(r => r.Volume)];
        }
    }

    /// <summary>Marks an automatic sync as started, so the next one is due an interval later whatever its outcome.</summary>
    public void MarkAttempt(string volume, DateTimeOffset now)
    {
        lock (_book.Lock)
        {
            if (_book.Replicas.TryGetValue(volume, out var state))
            {
                state.LastAttemptAt = now;
            }
        }
    }

    public void Dispose() => _syncing.Dispose();
}
