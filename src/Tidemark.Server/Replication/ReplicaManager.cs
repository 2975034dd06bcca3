using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Replication;
using Tidemark.Server.Events;
using Tidemark.Server.Metrics;

namespace Tidemark.Server.Replication;

/// <summary>
/// The sending end: volumes replicated to partners (DATA/replicas.json). A sync takes a replication
/// snapshot, asks the partner which snapshots its replica has, and sends only what changed since the
/// newest one both sides have (a full stream the first time) over the mutual-TLS link. A broken
/// transfer is retried with backoff and resumes at the offset the partner durably reached. After a
/// success the previous replication snapshot is deleted: the newest one is the base of the next sync
/// and is protected from policies meanwhile.
/// </summary>
public sealed class ReplicaManager : IDisposable, IMetricsSource
{
    public const string SnapshotPrefix = "repl-";
    public const int MaxAttempts = 6;

    /// <summary>zstd level of replication streams unless a replica says otherwise.</summary>
    public const int DefaultCompressionLevel = 3;

    private const string Refused = PartnerLink.RefusedKey;

    private readonly Pool _pool;
    private readonly ReplicaReceiver _receiver;
    private readonly PartnerRegistry _partners;
    private readonly ServerIdentity _identity;
    private readonly EventLog _events;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _path;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, ReplicaState> _replicas = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _syncing = new(1, 1);

    public ReplicaManager(Pool pool, ReplicaReceiver receiver, PartnerRegistry partners, ServerIdentity identity, EventLog events, TimeProvider time, ILogger logger, string path)
    {
        _pool = pool;
        _receiver = receiver;
        _partners = partners;
        _identity = identity;
        _events = events;
        _time = time;
        _logger = logger;
        _path = path;
        if (File.Exists(path))
        {
            try
            {
                foreach (var state in JsonSerializer.Deserialize<List<ReplicaState>>(File.ReadAllText(path), ServerSettings.FileJson) ?? [])
                {
                    _replicas[state.Volume] = state;
                }
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"{path} is not a valid replica list ({ex.Message}); fix it or restore it from a backup", ex);
            }
        }
    }

    /// <summary>When a snapshot policy last snapshotted a volume or group (for replicas that follow policy snapshots).</summary>
    public Func<string, DateTimeOffset?> LastPolicySnapshot { get; set; } = _ => null;

    /// <summary>Brings up an export (the standby exports of a promoted replica).</summary>
    public Func<CreateExportRequest, ExportDto>? CreateExport { get; set; }

    /// <summary>Backoff between attempts; tests shorten it.</summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromSeconds(1);

    public IReadOnlyList<ReplicaDto> List()
    {
        lock (_lock)
        {
            return [.. _replicas.Values.Select(ToDto)];
        }
    }

    public ReplicaDto Get(string volume)
    {
        lock (_lock)
        {
            return ToDto(Find(volume));
        }
    }

    /// <summary>A reason to keep <paramref name="address"/> (the base of the next sync), or null.</summary>
    public string? Protects(string address)
    {
        lock (_lock)
        {
            if (_replicas.Values.FirstOrDefault(r => r.PendingSnapshot is { } p && Members(r).Any(m => $"{m}@{p}" == address)) is { } sending)
            {
                return $"replica {sending.Volume} -> {sending.Partner} is sending it (the next sync continues that transfer)";
            }

            return _replicas.Values.FirstOrDefault(r => r.LastSnapshot is { } s && Members(r).Any(m => $"{m}@{s}" == address)) is { } replica
                ? $"it is the newest snapshot replica {replica.Volume} -> {replica.Partner} shares, the base of its next sync"
                : null;
        }
    }

    private IEnumerable<string> Members(ReplicaState replica) =>
        replica.IsGroup ? _pool.Groups.FirstOrDefault(g => g.Name == replica.Volume)?.Volumes ?? [] : [replica.Volume];

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
        lock (_lock)
        {
            if (_replicas.TryGetValue(request.Volume, out var existing))
            {
                throw new StorageException(StorageError.AlreadyExists, $"{request.Volume} is already replicated to {existing.Partner}");
            }

            CheckEvery(request.Every);
            CheckBandwidth(request.Bandwidth);
            CheckStandby(request.StandbyExports);
            CheckLevel(request.CompressionLevel);
            var state = new ReplicaState { Volume = request.Volume, Partner = request.Partner, RemoteVolume = request.RemoteVolume ?? request.Volume, Every = request.Every, Bandwidth = request.Bandwidth, IsGroup = isGroup, AfterPolicySnapshots = request.AfterPolicySnapshots, Seed = request.Seed, StandbyExports = request.StandbyExports?.ToList(), CompressionLevel = request.CompressionLevel ?? DefaultCompressionLevel };
            _replicas[state.Volume] = state;
            Save();
            return ToDto(state);
        }
    }

    /// <summary>Changes the schedule or the bandwidth limit; it applies from the next sync.</summary>
    public ReplicaDto Update(string volume, UpdateReplicaRequest request)
    {
        var every = Off(request.Every);
        var bandwidth = Off(request.Bandwidth);
        CheckEvery(every);
        CheckBandwidth(bandwidth);
        CheckStandby(request.StandbyExports);
        CheckLevel(request.CompressionLevel);
        lock (_lock)
        {
            var state = Find(volume);
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

            Save();
            return ToDto(state);
        }

        static string? Off(string? value) => string.Equals(value, "off", StringComparison.OrdinalIgnoreCase) ? null : value;
    }

    private static void CheckEvery(string? every)
    {
        if (every is null)
        {
            return;
        }

        try
        {
            if (ServerSettings.Duration(every, "every") < TimeSpan.FromSeconds(1))
            {
                throw new ArgumentException("every must be at least 1s");
            }
        }
        catch (ArgumentException ex)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{ex.Message} (how often to sync, e.g. 30s, 5m, 1h)", ex);
        }
    }

    private static void CheckLevel(int? level)
    {
        if (level is < 0 or > 22)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the zstd level is 1 (fastest) to 22 (smallest), or 0 to send blocks uncompressed; not {level}");
        }
    }

    private static void CheckStandby(IReadOnlyList<StandbyExportDto>? exports)
    {
        foreach (var export in exports ?? [])
        {
            if (export.Protocol is not ("nbd" or "iscsi"))
            {
                throw new StorageException(StorageError.InvalidArgument, $"a standby export is 'nbd' or 'iscsi' (optionally with a name, nbd:NAME), not '{export.Protocol}'");
            }

            if (export.Name is not null)
            {
                ExportRegistry.CheckName(export.Name);
            }

            if (export.Protocol == "nbd" && (export.Iqn is not null || export.AllowedInitiators is { Count: > 0 }))
            {
                throw new StorageException(StorageError.InvalidArgument, "an IQN and allowed initiators belong to an iSCSI standby export, not an NBD one");
            }
        }
    }

    /// <summary>What each replica volume at the partner gets as standby exports (every member an entry, maybe empty).</summary>
    private Dictionary<string, List<CreateExportRequest>> ResolveStandby(ReplicaState state)
    {
        var members = state.IsGroup ? Members(state).ToList() : [state.RemoteVolume];
        var result = members.ToDictionary(m => m, _ => new List<CreateExportRequest>(), StringComparer.Ordinal);
        foreach (var export in state.StandbyExports ?? [])
        {
            if (export.Protocol == "nbd")
            {
                foreach (var member in members)
                {
                    var name = export.Name is null ? member : state.IsGroup ? $"{export.Name}-{member}" : export.Name;
                    result[member].Add(new CreateExportRequest(member, name, "nbd"));
                }
            }
            else if (members.Count > 0)
            {
                result[members[0]].Add(new CreateExportRequest(
                    members[0],
                    export.Name ?? (state.IsGroup ? state.Volume : members[0]),
                    "iscsi",
                    AdditionalTargets: members.Count > 1 ? members[1..] : null,
                    Iqn: export.Iqn,
                    AllowedInitiators: export.AllowedInitiators));
            }
        }

        return result;
    }

    /// <summary>Tells the partner which exports to bring up when it promotes the replica (with every sync: it must know them before a disaster).</summary>
    private async Task SendStandbyAsync(HttpClient http, ReplicaState state, CancellationToken ct)
    {
        if (state.StandbyExports is null || state.Reverse)
        {
            return;
        }

        foreach (var (member, exports) in ResolveStandby(state))
        {
            using var response = await http.PostAsJsonAsync($"{PartnerLink.PathPrefix.TrimStart('/')}/volumes/{Uri.EscapeDataString(member)}/standby", exports, ApiJson.Options, ct);
            await PartnerLink.EnsureSuccessAsync(response, $"the partner did not take the standby exports of {member}", ct);
        }
    }

    /// <summary>Brings up the exports prepared for promoted volumes; says what came up and what could not (the promotion stands either way).</summary>
    private string? BringUpStandby(IEnumerable<string> volumes)
    {
        var lines = new List<string>();
        foreach (var volume in volumes)
        {
            foreach (var export in _receiver.StandbyExportsOf(volume) ?? [])
            {
                try
                {
                    var up = CreateExport?.Invoke(export) ?? throw new InvalidOperationException("no export registry");
                    lines.Add($"standby export {up.Name} ({up.Protocol}) is up{(up.Url is null ? "" : $": {up.Url}")}");
                }
                catch (StorageException ex)
                {
                    lines.Add($"standby export {export.Name} ({export.Protocol}) could not come up: {ex.Message}");
                }
            }
        }

        return lines.Count == 0 ? null : string.Join("; ", lines);
    }

    /// <summary>Bytes per second, at least 64 KiB/s (below that a sync of any size would take hours).</summary>
    private static long? CheckBandwidth(string? bandwidth)
    {
        if (bandwidth is null)
        {
            return null;
        }

        if (!ByteSize.TryParse(bandwidth, out var rate) || rate < 64 * 1024)
        {
            throw new StorageException(StorageError.InvalidArgument, $"bandwidth '{bandwidth}' is not a rate; write bytes per second of at least 64K, such as 20M or 1G, or off");
        }

        return rate;
    }

    public void Delete(string volume)
    {
        lock (_lock)
        {
            var state = Find(volume);
            _replicas.Remove(volume);
            Save();
            if (state.PendingSnapshot is { } pending)
            {
                foreach (var member in Members(state))
                {
                    if (_pool.TryGetVolume(member, out _) && _pool.ListSnapshots(member).Any(s => s.Name == pending))
                    {
                        DeleteQuietly($"{member}@{pending}");
                    }
                }
            }
        }
    }

    /// <summary>One replication cycle of <paramref name="volume"/>: snapshot, diff against the newest common snapshot, send, resume on failure.</summary>
    public async Task<ReplicaDto> SyncAsync(string volume, OperationProgress? progress, CancellationToken cancellationToken)
    {
        ReplicaState state;
        lock (_lock)
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

            // A transfer an earlier sync left unfinished (a bad link, this server killed) is
            // continued: same snapshot, from the offset the partner durably applied, so every sync
            // makes progress however often the link breaks. Otherwise a group is cut at one instant
            // and sent member by member; the partner commits all the members' snapshots together
            // only when every stream is in.
            var snapshots = PendingSnapshots(state);
            var continued = snapshots is not null;
            if (snapshots is null)
            {
                var name = $"{SnapshotPrefix}{started.UtcDateTime:yyyyMMdd-HHmmss-fff}";
                snapshots = state.IsGroup ? _pool.SnapshotGroup(volume, name) : [_pool.CreateSnapshot(volume, name)];
                lock (_lock)
                {
                    state.PendingSnapshot = name;
                    Save();
                }
            }

            var snapshot = snapshots[0];
            progress ??= new OperationProgress(cancellationToken);
            var tracker = new SyncProgress(progress);
            lock (_lock)
            {
                state.Running = (progress, started);
            }

            using var http = PartnerLink.Create(_identity, partner, Timeout.InfiniteTimeSpan);
            Exception? last = null;
            long sent = 0, rangeBytes = 0;
            var wire = new WireCounter();
            var attempts = 0;
            var scans = new Dictionary<Guid, ScanPlan>();
            for (var attempt = 1; attempt <= MaxAttempts; attempt++)
            {
                attempts = attempt;
                try
                {
                    (sent, rangeBytes) = await SendAllAsync(http, state, snapshots, tracker, scans, wire, cancellationToken);
                    last = null;
                    break;
                }
                catch (StorageException ex) when (ex.Data.Contains(Refused))
                {
                    // The partner decided (not paired, stale role generation, not a replica target...):
                    // another attempt gets the same answer, so its reason is the sync's result at once.
                    last = ex;
                    break;
                }
                catch (HttpRequestException ex) when ((int?)ex.StatusCode is >= 400 and < 500)
                {
                    last = ex;
                    break;
                }
                catch (HttpRequestException ex) when (IsRefusedHandshake(ex))
                {
                    // Not a broken link: the partner does not know this server. Retrying cannot help.
                    last = new StorageException(StorageError.Unavailable, $"{partner.Name} refused the TLS handshake: it is not paired with this server; run 'tidemark partner add' there with fingerprint {_identity.Fingerprint}", ex);
                    last.Data[Refused] = true;
                    break;
                }
                catch (Exception ex) when (ex is HttpRequestException or IOException or StorageException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
                {
                    last = ex;
                    _logger.LogWarning("Replication of {Volume} to {Partner}, attempt {Attempt}: {Message}", volume, partner.Name, attempt, ex.Message);
                    if (attempt < MaxAttempts)
                    {
                        // While it waits, the sync is not "100%, ETA 0": 'replica show' says it is retrying and why.
                        lock (_lock)
                        {
                            state.Retrying = $"attempt {attempt} of {MaxAttempts} failed ({ex.Message}); retrying";
                        }

                        await Task.Delay(RetryDelay * (1 << (attempt - 1)), _time, cancellationToken);
                        lock (_lock)
                        {
                            state.Retrying = null;
                        }
                    }
                }
            }

            var retries = attempts - 1;
            lock (_lock)
            {
                state.Retries += retries;
                state.BytesSent += wire.Bytes; // every attempt's: the link carried them all
                if (last is not null)
                {
                    // A broken link leaves the transfer to the next sync, which continues it. A
                    // refusal would only be refused again: its snapshots are dropped.
                    if (IsRefusal(last))
                    {
                        foreach (var failed in snapshots)
                        {
                            DeleteQuietly(failed.Address);
                        }

                        state.PendingSnapshot = null;
                    }

                    state.LastError = last.Message;
                    Save();
                    var tries = attempts == 1 ? "1 attempt" : $"{attempts} attempts";
                    _events.Record("replica.sync", volume, "server", $"replication to {partner.Name} failed after {tries}: {last.Message}; the replica keeps its last complete snapshot", "failed");
                    throw new StorageException(StorageError.Unavailable, $"replicating {volume} to {partner.Name} failed after {tries} ({Describe(last)}); the replica keeps its last complete snapshot {state.LastSnapshot ?? "(none yet)"}");
                }

                var previous = state.LastSnapshot;
                state.PendingSnapshot = null;
                state.LastSnapshot = snapshot.Name;
                state.LastSnapshotCreatedAt = snapshot.CreatedAt;
                state.LastSyncAt = _time.GetUtcNow();
                state.LastBytesSent = sent;
                state.LastRangeBytes = rangeBytes;
                state.LastDurationSeconds = (state.LastSyncAt.Value - started).TotalSeconds;
                state.LastError = null;
                Save();
                foreach (var member in snapshots.Select(s => s.Volume))
                {
                    if (previous is not null && previous != snapshot.Name && _pool.ListSnapshots(member).Any(s => s.Name == previous))
                    {
                        DeleteQuietly($"{member}@{previous}");
                    }
                }

                _events.Record("replica.sync", volume, "server", $"replicated {volume}@{snapshot.Name} to {partner.Name} as {state.RemoteVolume}{(continued ? " (continuing the transfer an earlier sync left unfinished)" : "")}: {sent:N0} bytes on the wire for {rangeBytes:N0} bytes of changed ranges in {state.LastDurationSeconds:F1} s{(retries > 0 ? $" after {retries} retries" : "")}");
                return ToDto(state);
            }
        }
        finally
        {
            lock (_lock)
            {
                state.Running = null;
                state.Retrying = null;
            }

            _syncing.Release();
        }
    }

    private static bool IsRefusal(Exception ex) =>
        ex.Data.Contains(Refused) || ex is HttpRequestException { StatusCode: { } status } && (int)status is >= 400 and < 500;

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

        var members = Members(state).ToList();
        var found = members.Select(m => _pool.TryGetVolume(m, out _) ? _pool.ListSnapshots(m).FirstOrDefault(s => s.Name == name) : null).ToList();
        if (members.Count > 0 && found.All(s => s is not null))
        {
            return [.. found.OfType<SnapshotInfo>()];
        }

        foreach (var orphan in found.OfType<SnapshotInfo>())
        {
            DeleteQuietly(orphan.Address);
        }

        lock (_lock)
        {
            state.PendingSnapshot = null;
            Save();
        }

        return null;
    }

    private void DeleteQuietly(string address)
    {
        try
        {
            _pool.DeleteSnapshot(address);
        }
        catch (StorageException ex)
        {
            _logger.LogInformation("Kept {Snapshot}: {Message}", address, ex.Message);
        }
    }

    /// <summary>The messages down an exception's chain ("An error occurred while sending the request" alone says nothing).</summary>
    private static string Describe(Exception ex)
    {
        var messages = new List<string>();
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (!messages.Contains(e.Message))
            {
                messages.Add(e.Message);
            }
        }

        return string.Join(": ", messages);
    }

    private static bool IsRefusedHandshake(Exception ex)
    {
        for (var e = ex.InnerException; e is not null; e = e.InnerException)
        {
            if (e is System.Security.Authentication.AuthenticationException)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Sends every member's stream (one for a volume) from the newest snapshot both sides share,
    /// resuming where the partner durably got, skipping what it already has; for a group, then asks
    /// the partner to commit the members together. Sets the progress total first (the bytes of ranges
    /// to send are known from the diffs), so the ETA is right, also after a resume.
    /// </summary>
    private async Task<(long Sent, long RangeBytes)> SendAllAsync(HttpClient http, ReplicaState state, IReadOnlyList<SnapshotInfo> snapshots, SyncProgress progress, Dictionary<Guid, ScanPlan> scans, WireCounter wire, CancellationToken ct)
    {
        await SendStandbyAsync(http, state, ct);
        var plans = new List<(SnapshotInfo Snapshot, string Remote, SnapshotInfo? Common, long Resume, bool Scan)>();
        var committed = 0;
        foreach (var snapshot in snapshots)
        {
            var remote = $"{PartnerLink.PathPrefix.TrimStart('/')}/volumes/{Uri.EscapeDataString(state.IsGroup ? snapshot.Volume : state.RemoteVolume)}";
            List<RemoteSnapshotDto> theirs;
            using (var listed = await http.GetAsync($"{remote}/snapshots", ct))
            {
                await PartnerLink.EnsureSuccessAsync(listed, "the partner did not list its snapshots", ct);
                theirs = await listed.Content.ReadFromJsonAsync<List<RemoteSnapshotDto>>(ApiJson.Options, ct) ?? [];
            }

            if (theirs.Any(s => s.Id == snapshot.Id))
            {
                committed++; // an earlier attempt got through; only its answer was lost
                continue;
            }

            var ids = theirs.Select(s => s.Id).ToHashSet();
            var common = _pool.ListSnapshots(snapshot.Volume).Where(s => ids.Contains(s.Id) && s.Id != snapshot.Id).MaxBy(s => s.CreatedAt);
            var partial = await GetPartialAsync(http, remote, ct);
            if (partial is { Complete: true } done && done.SnapshotId == snapshot.Id)
            {
                continue; // this member's whole stream is in and waits for the commit
            }

            // With no snapshot in common, the partner's volume (a seed, a replica whose base was
            // lost, the old primary failing back) is compared by hash scan, unless this snapshot's
            // full stream is already under way there.
            var resume = partial is { } p && p.SnapshotId == snapshot.Id ? p.AppliedOffset : 0;
            var scan = scans.ContainsKey(snapshot.Id) || (common is null && partial?.SnapshotId != snapshot.Id);
            plans.Add((snapshot, remote, common, resume, scan));
        }

        if (committed == snapshots.Count)
        {
            return (0, 0);
        }

        progress.SetTotalOnce(() => plans.Sum(p => p.Scan ? scans.TryGetValue(p.Snapshot.Id, out var known) ? known.RangeBytes : p.Snapshot.SizeBytes : SnapshotStreamWriter.RangeBytes(_pool, p.Snapshot.Address, p.Common?.Address)));
        var scanned = new Dictionary<Guid, ScanPlan?>();
        foreach (var plan in plans.Where(p => p.Scan))
        {
            scanned[plan.Snapshot.Id] = scans.TryGetValue(plan.Snapshot.Id, out var known) ? known : await ScanAsync(http, state, plan.Snapshot, plan.Remote, progress, scans, ct);
        }

        long sent = 0, rangeBytes = 0;
        var kept = new List<SnapshotDto>();
        var bandwidth = CheckBandwidth(state.Bandwidth);
        foreach (var (snapshot, remote, common, resume, _) in plans)
        {
            var group = state.IsGroup ? $"{state.Volume}/{snapshot.Name}" : null;
            var (s, r) = await SendAsync(http, remote, snapshot, common, scanned.GetValueOrDefault(snapshot.Id), resume, state.Reverse, bandwidth, state.CompressionLevel, group, progress, wire, state.Reverse && state.DiscardWritesAtPartner ? kept : null, ct);
            sent += s;
            rangeBytes += r;
        }

        if (kept.Count > 0)
        {
            lock (_lock)
            {
                // One address per member (VOLUME@pre-rollback-...), so each member's kept snapshot is named.
                state.DiscardedWrites = $"split brain resolved: {state.Partner} had written after the common snapshot; those writes are kept there as {string.Join(", ", kept.Select(k => k.Address))}";
                state.DiscardWritesAtPartner = false;
            }

            _events.Record("replica.split-brain", state.Volume, "server", state.DiscardedWrites);
        }

        if (state.IsGroup)
        {
            var commit = new GroupCommitRequest($"{state.Volume}/{snapshots[0].Name}", [.. snapshots.Select(s => new GroupMemberCommitDto(s.Volume, s.Id))], state.Reverse);
            using var response = await http.PostAsJsonAsync($"{PartnerLink.PathPrefix.TrimStart('/')}/groups/commit", commit, ApiJson.Options, ct);
            if (!response.IsSuccessStatusCode)
            {
                var problem = await PartnerLink.TryReadProblemAsync(response, ct);
                throw new StorageException(StorageError.Unavailable, $"the partner did not commit group {state.Volume}: {problem?.Detail ?? response.ReasonPhrase}");
            }
        }

        return (sent, rangeBytes);
    }

    /// <summary>
    /// Compares <paramref name="snapshot"/> with the partner's volume by hash scan and remembers what
    /// differs for the rest of the sync (retries resume the stream of those ranges). Null when the
    /// partner has no such volume: then it gets a full stream.
    /// </summary>
    private async Task<ScanPlan?> ScanAsync(HttpClient http, ReplicaState state, SnapshotInfo snapshot, string remote, SyncProgress progress, Dictionary<Guid, ScanPlan> scans, CancellationToken ct)
    {
        using var response = await http.PostAsync($"{remote}/scan?seed={(state.Seed ? "true" : "false")}&reverse={(state.Reverse ? "true" : "false")}&generation={_receiver.GenerationOf(snapshot.Volume)}", null, ct);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            progress.AddToTotal(-snapshot.SizeBytes + SnapshotStreamWriter.RangeBytes(_pool, snapshot.Address, null));
            return null;
        }

        await PartnerLink.EnsureSuccessAsync(response, "the partner cannot compare its copy", ct);
        var scanBase = await response.Content.ReadFromJsonAsync<ScanBaseDto>(ApiJson.Options, ct)
            ?? throw new StorageException(StorageError.Unavailable, "the partner's answer to a hash scan was empty");
        var key = scanBase.SnapshotId;
        var plan = await HashScanner.ScanAsync(http, remote, _pool.OpenSnapshot(snapshot.Address), scanBase, covered => progress.Covered(key, covered, resumed: false), ct);
        scans[snapshot.Id] = plan;
        progress.AddToTotal(plan.RangeBytes);
        lock (_lock)
        {
            state.LastScannedBytes = plan.ScannedBytes;
        }

        _events.Record("replica.scan", state.Volume, "server", $"hash scan of {snapshot.Address} against {state.Partner}:{scanBase.SnapshotName}: {plan.DifferingGranules:N0} of {HashScan.GranuleCount(snapshot.SizeBytes):N0} granules of 64 KiB differ, {plan.RangeBytes:N0} bytes of blocks to send; {plan.HashBytes:N0} bytes of hashes exchanged");
        return plan;
    }

    private static async Task<PartialReceiveDto?> GetPartialAsync(HttpClient http, string remote, CancellationToken ct)
    {
        using var response = await http.GetAsync($"{remote}/partial", ct);
        return response.StatusCode == HttpStatusCode.NoContent ? null : await response.Content.ReadFromJsonAsync<PartialReceiveDto>(ApiJson.Options, ct);
    }

    /// <summary>Sends one member's stream; returns its bytes on the wire and of ranges covered. Every byte on the wire also goes to <paramref name="wire"/>, also when it fails.</summary>
    private async Task<(long Sent, long RangeBytes)> SendAsync(HttpClient http, string remote, SnapshotInfo snapshot, SnapshotInfo? common, ScanPlan? scan, long resume, bool reverse, long? bytesPerSecond, int level, string? group, SyncProgress progress, WireCounter wire, List<SnapshotDto>? discardKeptAt, CancellationToken ct)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 4 << 20, resumeWriterThreshold: 2 << 20));
        var counting = new CountingStream(pipe.Reader.AsStream(), wire);
        long skipped = 0;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        StreamHeader? header = null;
        var writer = Task.Run(
            () =>
            {
                try
                {
                    using var output = pipe.Writer.AsStream();
                    header = SnapshotStreamWriter.Write(_pool, snapshot.Address, common?.Address, output, new StreamExportOptions
                    {
                        ResumeOffset = resume,
                        CompressionLevel = level,
                        Ranges = scan?.Ranges,
                        RemoteBase = scan is null ? null : (scan.Base.SnapshotId, scan.Base.SnapshotName),
                        Resumed = before =>
                        {
                            skipped = before;
                            progress.Covered(snapshot.Id, before, resumed: true);
                        },
                        Progress = covered => progress.Covered(snapshot.Id, covered, resumed: false),
                    }, stop.Token);
                }
                catch (Exception ex)
                {
                    pipe.Writer.Complete(ex);
                    throw;
                }
            },
            stop.Token);
        Stream body = bytesPerSecond is { } rate ? new RateLimitedStream(counting, rate, _time) : counting;
        using var content = new StreamContent(body, 1 << 20);
        var query = $"resume={resume}&generation={_receiver.GenerationOf(snapshot.Volume)}{(reverse ? "&reverse=true" : "")}{(discardKeptAt is null ? "" : "&discard=true")}{(group is null ? "" : $"&group={Uri.EscapeDataString(group)}")}";
        HttpResponseMessage response;
        try
        {
            response = await http.PostAsync($"{remote}/receive?{query}", content, ct);
        }
        catch
        {
            await StopWriterAsync();
            throw;
        }

        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                // A refusal may come before the stream was read: the partner's reason is the
                // result, not whatever the abandoned writer reports.
                await StopWriterAsync();
                await PartnerLink.EnsureSuccessAsync(response, "the partner refused the stream", ct);
            }

            await writer.ConfigureAwait(false);
            if (discardKeptAt is not null && await KeptStateAsync(response, ct) is { } keptState)
            {
                discardKeptAt.Add(keptState);
            }
        }

        // The ranges this attempt covered, for the bytes this attempt sent: what a resume skipped
        // went over the wire in an earlier attempt, so counting it would inflate the ratio.
        return (counting.BytesRead, Math.Max(0, (header?.RangeBytes ?? 0) - skipped));

        // A single volume answers 200 with the import; a group member 202 with only what was kept
        // (empty from a partner of an older version, which kept it without saying).
        static async Task<SnapshotDto?> KeptStateAsync(HttpResponseMessage response, CancellationToken ct)
        {
            var body = await response.Content.ReadAsStringAsync(ct);
            return (response.StatusCode, body.Length) switch
            {
                (HttpStatusCode.OK, > 0) => JsonSerializer.Deserialize<StreamImportDto>(body, ApiJson.Options)?.KeptState,
                (HttpStatusCode.Accepted, > 0) => JsonSerializer.Deserialize<GroupMemberReceivedDto>(body, ApiJson.Options)?.KeptState,
                _ => null,
            };
        }

        // The writer may be blocked on a full pipe that nobody reads any more: completing the
        // reader releases it, the token stops it at its next record.
        async Task StopWriterAsync()
        {
            await stop.CancelAsync();
            await pipe.Reader.CompleteAsync();
            try
            {
                await writer.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Stopped because the request ended; the request's outcome is what counts.
            }
        }
    }

    /// <summary>One sync's bytes on the wire, every attempt (a failed one used the link too): what the replica's total counts.</summary>
    private sealed class WireCounter
    {
        private long _bytes;

        public long Bytes => Interlocked.Read(ref _bytes);

        public void Add(long bytes) => Interlocked.Add(ref _bytes, bytes);
    }

    /// <summary>
    /// Fail-back, at the site where a replica was promoted: sends the volume back to the partner it
    /// came from, into the volume it came from, as an incremental stream from the newest snapshot both
    /// sides share. The partner reverts what it wrote after that snapshot (keeping it as a snapshot)
    /// and holds its own replication of that volume. Later syncs of the reverse direction send only
    /// what changed here; 'replica promote' at the partner ends it.
    /// </summary>
    public async Task<ReplicaDto> ReverseAsync(string volume, OperationProgress? progress, bool discardWritesAtHome, CancellationToken cancellationToken)
    {
        if (_receiver.FindIncoming(volume) is null && _receiver.GroupMembers(volume) is { Count: > 0 } members)
        {
            return await ReverseGroupAsync(volume, members, progress, discardWritesAtHome, cancellationToken);
        }

        var incoming = _receiver.FindIncoming(volume)
            ?? throw new StorageException(StorageError.NotFound, $"{volume} was not replicated into this server; only a promoted replica can be sent back to its source");
        if (!incoming.Promoted)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{volume} is still a replica of {incoming.Partner}:{incoming.SourceVolume}; promote it first ('tidemark replica promote {volume}')");
        }

        _partners.Get(incoming.Partner);
        lock (_lock)
        {
            if (_replicas.TryGetValue(volume, out var existing) && !(existing.Reverse && existing.Partner == incoming.Partner))
            {
                throw new StorageException(StorageError.AlreadyExists, $"{volume} is already replicated to {existing.Partner}; delete that replica first");
            }

            if (!_replicas.TryGetValue(volume, out var reverse))
            {
                reverse = new ReplicaState { Volume = volume, Partner = incoming.Partner, RemoteVolume = incoming.SourceVolume, Reverse = true };
                _replicas[volume] = reverse;
            }

            reverse.DiscardWritesAtPartner = discardWritesAtHome;
            Save();
        }

        _events.Record("replica.reverse", volume, "server", $"sending {volume} back to {incoming.Partner} as {incoming.SourceVolume} (fail-back)");
        return await SyncAsync(volume, progress, cancellationToken);
    }

    /// <summary>
    /// Fail-back of a replicated group as one unit: its promoted members are cut together here (a
    /// group of that name is made of them if this site has none) and sent back into the same volumes
    /// at the partner, which commits all members' snapshots together and holds its own replication
    /// of the group until 'replica promote GROUP' there.
    /// </summary>
    private async Task<ReplicaDto> ReverseGroupAsync(string group, IReadOnlyList<string> members, OperationProgress? progress, bool discardWritesAtHome, CancellationToken cancellationToken)
    {
        var records = members.Select(m => _receiver.FindIncoming(m)!).ToList();
        if (records.FirstOrDefault(r => !r.Promoted) is { } notPromoted)
        {
            throw new StorageException(StorageError.InvalidArgument, $"member {notPromoted.Volume} of group {group} is still a replica of {notPromoted.Partner}; promote the group first ('tidemark replica promote {group}')");
        }

        var partner = records[0].Partner;
        if (records.Any(r => r.Partner != partner))
        {
            throw new StorageException(StorageError.InvalidArgument, $"the members of group {group} came from different partners; send them back one by one");
        }

        _partners.Get(partner);
        if (_pool.Groups.FirstOrDefault(g => g.Name == group) is { } existing)
        {
            if (!existing.Volumes.Order(StringComparer.Ordinal).SequenceEqual(members.Order(StringComparer.Ordinal)))
            {
                throw new StorageException(StorageError.InvalidArgument, $"group {group} here has members {string.Join(", ", existing.Volumes)}, not the replicated {string.Join(", ", members)}; delete or rename it first");
            }
        }
        else
        {
            _pool.CreateGroup(group, members);
        }

        lock (_lock)
        {
            if (_replicas.TryGetValue(group, out var replica) && !(replica.Reverse && replica.Partner == partner))
            {
                throw new StorageException(StorageError.AlreadyExists, $"{group} is already replicated to {replica.Partner}; delete that replica first");
            }

            if (!_replicas.TryGetValue(group, out var reverse))
            {
                reverse = new ReplicaState { Volume = group, Partner = partner, RemoteVolume = group, Reverse = true, IsGroup = true };
                _replicas[group] = reverse;
            }

            reverse.DiscardWritesAtPartner = discardWritesAtHome;
            Save();
        }

        _events.Record("replica.reverse", group, "server", $"sending group {group} ({string.Join(", ", members)}) back to {partner} (fail-back)");
        return await SyncAsync(group, progress, cancellationToken);
    }

    /// <summary>A fail-back stream arrived into <paramref name="volume"/>: this server's replication of it is held until it is promoted here again.</summary>
    public void SuspendForFailBack(string volume, string partner)
    {
        lock (_lock)
        {
            if (_replicas.TryGetValue(volume, out var state) && !state.Reverse && state.Suspended is null)
            {
                state.Suspended = $"{partner} is failing back into {volume}; 'tidemark replica promote {volume}' here makes this site the primary again and resumes it";
                Save();
            }
        }
    }

    /// <summary>
    /// Promotes a replica here. For a fail-back (this site's own replication of the volume was held)
    /// that replication resumes and the partner is asked to demote its copy to a replica again; the
    /// note says how that went (the promotion stands either way).
    /// </summary>
    public async Task<(SnapshotInfo Snapshot, string? Note)> PromoteAsync(string volume, CancellationToken cancellationToken)
    {
        if (_receiver.FindIncoming(volume) is null && _receiver.GroupMembers(volume) is { Count: > 0 } members)
        {
            // A replicated group is promoted as one unit: every member at the newest group snapshot
            // they all share (committed together, so their newest snapshots are that one).
            if (members.FirstOrDefault(m => !_pool.TryGetVolume(m, out _) || _pool.ListSnapshots(m).Count == 0) is { } incomplete)
            {
                throw new StorageException(StorageError.InvalidArgument, $"member {incomplete} of group {volume} has no complete replicated snapshot; nothing of the group was promoted");
            }

            var promoted = members.Select(_receiver.Promote).ToList();
            var standby = BringUpStandby(members);
            var failBack = await ResumeAfterFailBackAsync(volume, _receiver.FindIncoming(members[0])!.Partner, members, cancellationToken);
            var groupNote = string.Join("; ", new[] { $"promoted the members of group {volume} together: {string.Join(", ", promoted.Select(s => s.Address))}", standby, failBack }.OfType<string>());
            _events.Record("replica.promote", volume, "server", groupNote);
            return (promoted[0], groupNote);
        }

        var incoming = _receiver.FindIncoming(volume);
        var snapshot = _receiver.Promote(volume);
        var note = incoming is null ? null : await ResumeAfterFailBackAsync(volume, incoming.Partner, [incoming.SourceVolume], cancellationToken);
        if (note is null)
        {
            var standby = BringUpStandby([volume]);
            _events.Record("replica.promote", volume, "server", $"{volume} is a primary here as of {snapshot.Address}{(standby is null ? "" : $"; {standby}")}");
            return (snapshot, standby);
        }

        _events.Record("replica.promote", volume, "server", $"{volume} is the primary here again as of {snapshot.Address} (fail-back): {note}");
        return (snapshot, note);
    }

    /// <summary>
    /// After a promotion here: if this site's own replication of <paramref name="volume"/> (a volume
    /// or group) was held for a fail-back, it resumes and the partner is asked to make its copies
    /// (<paramref name="remoteVolumes"/>) replicas again. Returns what happened, or null when there
    /// was no fail-back; the promotion stands either way.
    /// </summary>
    private async Task<string?> ResumeAfterFailBackAsync(string volume, string partnerName, IReadOnlyList<string> remoteVolumes, CancellationToken cancellationToken)
    {
        ReplicaState? resumed = null;
        lock (_lock)
        {
            if (_replicas.TryGetValue(volume, out var state) && state.Suspended is not null)
            {
                state.Suspended = null;
                Save();
                resumed = state;
            }
        }

        if (resumed is null)
        {
            return null;
        }

        try
        {
            var partner = _partners.Get(partnerName);
            using var http = PartnerLink.Create(_identity, partner, TimeSpan.FromSeconds(30));
            foreach (var remote in remoteVolumes)
            {
                // The demotion carries this site's new role generation: from now on the partner
                // refuses its own older streams (an old reverse sync) into this volume. A group's
                // members keep their names at both sites.
                var generation = _receiver.GenerationOf(_pool.TryGetVolume(volume, out _) ? volume : remote);
                using var response = await http.PostAsync($"{PartnerLink.PathPrefix.TrimStart('/')}/volumes/{Uri.EscapeDataString(remote)}/demote?generation={generation}", null, cancellationToken);
                await PartnerLink.EnsureSuccessAsync(response, $"{partnerName} could not demote {remote}", cancellationToken);
            }

            return $"{partnerName} made {string.Join(", ", remoteVolumes)} {(remoteVolumes.Count == 1 ? "a replica" : "replicas")} again; replication {volume} -> {resumed.Partner} resumes";
        }
        catch (Exception ex) when (ex is HttpRequestException or StorageException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return $"{partnerName} could not demote {string.Join(", ", remoteVolumes)} ({Describe(ex)}); run 'tidemark replica demote' for {(remoteVolumes.Count == 1 ? "it" : "each")} there before the next sync";
        }
    }

    /// <summary>Makes a promoted replica here a replica again (the other site failed back) and drops the reverse replication that fed it back.</summary>
    public SnapshotInfo? Demote(string volume, long? generation = null)
    {
        string? returnTo;
        lock (_lock)
        {
            // The last snapshot sent back is the one the other site has; the volume returns to it.
            returnTo = _replicas.TryGetValue(volume, out var reverse) && reverse.Reverse ? reverse.LastSnapshot
                : _replicas.Values.FirstOrDefault(r => r.Reverse && r.IsGroup && Members(r).Contains(volume))?.LastSnapshot;
        }

        if (generation is { } theirs && theirs < _receiver.GenerationOf(volume))
        {
            throw ReplicaReceiver.StaleGeneration($"a demotion of {volume} from role generation {theirs} is stale: this site is at {_receiver.GenerationOf(volume)}; nothing changed");
        }

        var kept = _receiver.Demote(volume, returnTo, generation);
        lock (_lock)
        {
            if (_replicas.TryGetValue(volume, out var state) && state.Reverse)
            {
                _replicas.Remove(volume);
                Save();
            }

            // A group sent back as one unit: its reverse replication ends with its last member's
            // demotion (the others still return to the snapshot it sent last).
            foreach (var group in _replicas.Values.Where(r => r.Reverse && r.IsGroup && Members(r).Contains(volume) && !Members(r).Any(_receiver.Promoted.Contains)).ToList())
            {
                _replicas.Remove(group.Volume);
                Save();
            }
        }

        _events.Record("replica.demote", volume, "server", $"{volume} is a replica again{(kept is null ? "" : $"; what it held beyond its newest snapshot is kept as {kept.Address}")}");
        return kept;
    }

    private ReplicaState Find(string volume) =>
        _replicas.TryGetValue(volume, out var state)
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
        NextSync(s),
        s.Reverse ? "reverse" : s.Suspended is null ? "active" : "suspended",
        s.Suspended,
        s.Bandwidth,
        s.IsGroup ? [.. Members(s)] : null,
        s.AfterPolicySnapshots,
        s.Seed,
        s.LastScannedBytes,
        s.StandbyExports,
        s.LastBytesSent > 0 && s.LastRangeBytes > 0 ? Math.Round((double)s.LastRangeBytes / s.LastBytesSent, 2) : null,
        s.Running is var (progress, started) ? Syncing(progress, started, s.Retrying) : null,
        s.CompressionLevel,
        s.DiscardedWrites);

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

    private static DateTimeOffset? NextSync(ReplicaState s) =>
        s.Every is null ? null : (s.LastAttemptAt ?? DateTimeOffset.MinValue) == DateTimeOffset.MinValue ? DateTimeOffset.MinValue : s.LastAttemptAt!.Value + ServerSettings.Duration(s.Every, "every");

    /// <summary>Volumes whose automatic sync is due at <paramref name="now"/> (the scheduler starts them as jobs).</summary>
    public IReadOnlyList<string> Due(DateTimeOffset now)
    {
        lock (_lock)
        {
            return [.. _replicas.Values.Where(r => r.Suspended is null && (IntervalDue(r, now) || PolicyDue(r))).Select(r => r.Volume)];
        }
    }

    private static bool IntervalDue(ReplicaState r, DateTimeOffset now) => r.Every is not null && (NextSync(r) ?? DateTimeOffset.MaxValue) <= now;

    // A policy snapshot taken since the last sync was started: replicate it (the sync takes its own
    // snapshot right after, holding the same data, so the DR site follows the policy's schedule).
    private bool PolicyDue(ReplicaState r) =>
        r.AfterPolicySnapshots && LastPolicySnapshot(r.Volume) is { } taken && taken > (r.LastAttemptAt ?? DateTimeOffset.MinValue);

    /// <summary>Marks an automatic sync as started, so the next one is due an interval later whatever its outcome.</summary>
    public void MarkAttempt(string volume, DateTimeOffset now)
    {
        lock (_lock)
        {
            if (_replicas.TryGetValue(volume, out var state))
            {
                state.LastAttemptAt = now;
            }
        }
    }

    private void Save() =>
        AtomicFile.WriteAllText(_path, JsonSerializer.Serialize(_replicas.Values.ToList(), ServerSettings.FileJson) + "\n");

    public void Dispose() => _syncing.Dispose();

    /// <summary>Per replica: lag (the recovery point), bytes sent, the last sync's size and compression, errors, retries, a running sync's progress and ETA.</summary>
    public void RenderMetrics(System.Text.StringBuilder builder)
    {
        var replicas = List();
        static (string, string)[] Labels(ReplicaDto r) => [("volume", r.Volume), ("partner", r.Partner), ("state", r.State)];
        void Each(string name, string type, string help, Func<ReplicaDto, double?> value)
        {
            PrometheusText.Family(builder, name, type, help);
            foreach (var replica in replicas)
            {
                if (value(replica) is { } v)
                {
                    PrometheusText.Sample(builder, name, Labels(replica), v);
                }
            }
        }

        Each("tidemark_replica_lag_seconds", "gauge", "Age of the newest snapshot the partner has of each replicated volume or group: the recovery point if this site failed now.", r => r.LagSeconds);
        Each("tidemark_replica_sent_bytes_total", "counter", "Bytes of snapshot streams sent to the partner, all syncs.", r => r.BytesSent);
        Each("tidemark_replica_last_sync_sent_bytes", "gauge", "Bytes on the wire of the last successful sync.", r => r.LastBytesSent);
        Each("tidemark_replica_last_sync_changed_bytes", "gauge", "Bytes of changed ranges the last successful sync covered.", r => r.LastRangeBytes);
        Each("tidemark_replica_last_sync_duration_seconds", "gauge", "Duration of the last successful sync.", r => r.LastDurationSeconds);
        Each("tidemark_replica_compression_ratio", "gauge", "Changed bytes per byte on the wire in the last successful sync.", r => r.LastCompressionRatio);
        Each("tidemark_replica_retries_total", "counter", "Attempts retried after a broken transfer, all syncs.", r => r.Retries);
        Each("tidemark_replica_failing", "gauge", "1 while the replica's last sync failed (replica show says why), else 0.", r => r.LastError is null ? 0 : 1);
        Each("tidemark_replica_sync_remaining_bytes", "gauge", "Bytes the running sync still has to cover.", r => r.Syncing is { Total: { } total } s ? Math.Max(0, total - s.Done) : null);
        Each("tidemark_replica_sync_eta_seconds", "gauge", "Time the running sync needs at its current rate.", r => r.Syncing?.EtaSeconds);
    }

    private sealed class ReplicaState
    {
        public string Volume { get; set; } = "";

        public string Partner { get; set; } = "";

        public string RemoteVolume { get; set; } = "";

        public string? Every { get; set; }

        public DateTimeOffset? LastAttemptAt { get; set; }

        public string? LastSnapshot { get; set; }

        public DateTimeOffset? LastSnapshotCreatedAt { get; set; }

        public DateTimeOffset? LastSyncAt { get; set; }

        public long BytesSent { get; set; }

        public long LastBytesSent { get; set; }

        public long LastRangeBytes { get; set; }

        public double? LastDurationSeconds { get; set; }

        public int Retries { get; set; }

        public string? LastError { get; set; }

        /// <summary>Sync after each snapshot a policy takes of the volume or group.</summary>
        public bool AfterPolicySnapshots { get; set; }

        /// <summary><see cref="Volume"/> names a group, replicated as one unit.</summary>
        public bool IsGroup { get; set; }

        /// <summary>Bytes per second at most on the link ("20M"), or null.</summary>
        public string? Bandwidth { get; set; }

        /// <summary>This relationship sends a promoted replica back to the site it came from (fail-back).</summary>
        public bool Reverse { get; set; }

        /// <summary>A reverse sync may revert what the partner wrote after the common snapshot (split brain resolved by the administrator's flag).</summary>
        public bool DiscardWritesAtPartner { get; set; }

        /// <summary>Where the partner keeps the writes the last fail-back discarded (for 'replica show'), or null.</summary>
        public string? DiscardedWrites { get; set; }

        /// <summary>Why syncs are held (the partner fails back into this volume), or null.</summary>
        public string? Suspended { get; set; }

        /// <summary>The partner's volume holds a copy of this one already: with no snapshot in common it is compared by hash scan.</summary>
        public bool Seed { get; set; }

        /// <summary>The replication snapshot of a transfer not yet complete at the partner (saved before it is sent, so a restart continues it too).</summary>
        public string? PendingSnapshot { get; set; }

        /// <summary>Why the running sync waits to retry (not saved).</summary>
        [System.Text.Json.Serialization.JsonIgnore]
        public string? Retrying { get; set; }

        /// <summary>The sync under way, if any (not saved).</summary>
        [System.Text.Json.Serialization.JsonIgnore]
        public (OperationProgress Progress, DateTimeOffset Started)? Running { get; set; }

        /// <summary>Exports the partner brings up when it promotes the replica (null: none were ever set).</summary>
        public List<StandbyExportDto>? StandbyExports { get; set; }

        /// <summary>zstd level of the streams (0: none).</summary>
        public int CompressionLevel { get; set; } = DefaultCompressionLevel;

        /// <summary>Bytes the last hash scan compared (0: none yet).</summary>
        public long LastScannedBytes { get; set; }
    }

    /// <summary>
    /// A sync's progress across members and attempts: bytes of ranges covered per member snapshot,
    /// each counted once however often a broken transfer resumes; what a resume skips (sent before
    /// this job) counts as done but not towards the rate, so the ETA stays right.
    /// </summary>
    private sealed class SyncProgress(OperationProgress? progress)
    {
        private readonly Dictionary<Guid, long> _covered = [];

        public void AddToTotal(long bytes)
        {
            if (progress is { Total: { } total })
            {
                progress.SetTotal(total + bytes);
            }
        }

        public void SetTotalOnce(Func<long> total)
        {
            if (progress is { Total: null })
            {
                progress.SetTotal(progress.Done + total());
            }
        }

        public void Covered(Guid member, long covered, bool resumed)
        {
            lock (_covered)
            {
                var before = _covered.GetValueOrDefault(member);
                if (progress is null || covered <= before)
                {
                    return;
                }

                _covered[member] = covered;
                if (resumed)
                {
                    progress.Skip(covered - before);
                }
                else
                {
                    progress.Advance(covered - before);
                }
            }
        }
    }

    /// <summary>Counts what the HTTP client reads of the stream: the bytes on the wire (before TLS).</summary>
    private sealed class CountingStream(Stream inner, WireCounter wire) : Stream
    {
        public long BytesRead { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => BytesRead;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = inner.Read(buffer, offset, count);
            BytesRead += n;
            wire.Add(n);
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            BytesRead += n;
            wire.Add(n);
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
