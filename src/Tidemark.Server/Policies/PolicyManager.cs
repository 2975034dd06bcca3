using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Agents;
using Tidemark.Server.Events;

namespace Tidemark.Server.Policies;

/// <summary>
/// Runs snapshot policies in the server. Each tick (every few seconds, or <see cref="RunDue"/> from a
/// test's clock) takes a snapshot for every policy whose schedule is due or whose changed-data
/// threshold is reached, then applies its retention to the snapshots it made (never to anyone
/// else's; never to a held, exported or view-bearing snapshot, nor one <see cref="IsProtected"/>
/// names). After downtime a due policy takes one snapshot and schedules its next run from now: no
/// burst. Policies and what they own are control records in the pool (<see cref="PolicyRecord"/>) and every action is
/// an event ("policy:NAME" is the actor) and part of the policy's recent activity.
/// </summary>
public sealed partial class PolicyManager : PeriodicService
{
    public const int ActivityKept = 50;
    public static readonly TimeSpan TickInterval = TimeSpan.FromSeconds(5);

    private readonly Pool _pool;
    private readonly EventLog _events;
    private readonly ExportRegistry? _exports;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _path;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, PolicyState> _policies = new(StringComparer.Ordinal);
    private readonly HashSet<Task> _inFlight = [];

    public PolicyManager(Pool pool, EventLog events, ExportRegistry? exports, TimeProvider time, ILogger logger, string path)
        : base(time, logger)
    {
        _pool = pool;
        _events = events;
        _exports = exports;
        _time = time;
        _logger = logger;
        _path = path;
        Load();
    }

    /// <summary>Other components that need a snapshot kept (replication: the newest common snapshot). Returns a reason, or null.</summary>
    public Func<string, string?> IsProtected { get; set; } = _ => null;

    /// <summary>Quiesces the policy's hosts around its snapshots (ADR 0015); null: no agents (tests of policies alone).</summary>
    public SnapshotCoordinator? Agents { get; init; }

    /// <summary>Verifies the policy's snapshots through its first host (ADR 0015); null: no verification (tests of policies alone).</summary>
    public SnapshotVerifier? Verifier { get; init; }

    /// <summary>Builds the mail header index of the policy's snapshots on its hosts (docs/adr/0012); null: none (tests of policies alone).</summary>
    public MailIndexer? MailIndexer { get; init; }

    /// <summary>Indexing mail after a snapshot is on by default for a policy whose snapshots go through agents; hosts without a mail store on the volume skip it at no cost.</summary>
    public static bool IndexesMail(PolicyRequest d) => d.IndexMail ?? d.Hosts is { Count: > 0 };

    /// <summary>Verification is on by default for a policy whose snapshots go through agents (application-consistent ones).</summary>
    public static bool Verifies(PolicyRequest d) => d.Verify ?? d.Hosts is { Count: > 0 };

    /// <summary>When a policy last snapshotted this volume or group (a replica may follow policy snapshots), or null.</summary>
    public DateTimeOffset? LastSnapshotOf(string target)
    {
        lock (_lock)
        {
            return _policies.Values
                .Where(p => p.Definition.Volume == target || p.Definition.Group == target)
                .Select(p => p.LastSnapshotAt)
                .Max();
        }
    }

    public IReadOnlyList<PolicyDto> List()
    {
        lock (_lock)
        {
            return [.. _policies.Values.Select(p => p.ToDto())];
        }
    }

    public PolicyDto Get(string name)
    {
        lock (_lock)
        {
            return Find(name).ToDto();
        }
    }

    public PolicyDto Create(PolicyRequest request)
    {
        lock (_lock)
        {
            var (schedule, zone) = Validate(request);
            if (_policies.ContainsKey(request.Name))
            {
                throw new StorageException(StorageError.AlreadyExists, $"policy {request.Name} exists; change it with PUT or delete it first");
            }

            var state = new PolicyState { Definition = request, NextRun = schedule?.Next(_time.GetUtcNow()) };
            state.Bind(schedule, zone);
            _policies[request.Name] = state;
            Save();
            return state.ToDto();
        }
    }

    public PolicyDto Update(string name, PolicyRequest request)
    {
        lock (_lock)
        {
            var state = Find(name);
            if (request.Name != name)
            {
                throw new StorageException(StorageError.InvalidArgument, $"the policy's name is {name}; to rename it, create a new policy and delete this one");
            }

            var (schedule, zone) = Validate(request);
            var retarget = request.Volume != state.Definition.Volume || request.Group != state.Definition.Group;
            state.Definition = request;
            state.Bind(schedule, zone);
            state.NextRun = schedule?.Next(_time.GetUtcNow());
            if (retarget)
            {
                state.Snapshots.Clear(); // it owns nothing of its new target; the old snapshots stay, unmanaged
            }

            Save();
            return state.ToDto();
        }
    }

    /// <summary>Deletes the policy; the snapshots it made stay, unmanaged.</summary>
    public void Delete(string name)
    {
        lock (_lock)
        {
            Find(name);
            _policies.Remove(name);
            Save();
        }
    }

    /// <summary>Refuses to delete a volume or group that a policy snapshots, naming the policy.</summary>
    public void ThrowIfTargeted(string? volume = null, string? group = null)
    {
        lock (_lock)
        {
            var names = _policies.Values
                .Where(p => (volume is not null && p.Definition.Volume == volume) || (group is not null && p.Definition.Group == group))
                .Select(p => p.Definition.Name)
                .ToList();
            if (names.Count > 0)
            {
                throw new StorageException(StorageError.HasDependents, $"policies {string.Join(", ", names)} snapshot {volume ?? group}; delete them first ('tidemark policy delete NAME')");
            }
        }
    }

    /// <summary>Refuses to remove a host that a policy quiesces, naming the policy.</summary>
    public void ThrowIfHostUsed(string host)
    {
        lock (_lock)
        {
            var names = _policies.Values.Where(p => p.Definition.Hosts?.Contains(host, StringComparer.Ordinal) == true).Select(p => p.Definition.Name).ToList();
            if (names.Count > 0)
            {
                throw new StorageException(StorageError.HasDependents, $"policies {string.Join(", ", names)} quiesce host {host}; change them first ('tidemark policy update NAME --hosts ...')");
            }
        }
    }

    /// <summary>
    /// Takes a snapshot for the policy now and applies its retention, whatever its schedule says.
    /// Refused while the policy's previous run (a tick's, or another request's) is still going.
    /// </summary>
    public async Task<PolicyDto> RunNowAsync(string name)
    {
        PolicyState state;
        lock (_lock)
        {
            state = Find(name);
            if (state.Running)
            {
                throw new StorageException(StorageError.Busy, $"policy {name} is taking a snapshot now (its hosts' agents may be quiescing); try again when 'tidemark policy show {name}' has the result");
            }

            state.Running = true;
        }

        await RunAsync(state, _time.GetUtcNow(), "run on request");
        lock (_lock)
        {
            return state.ToDto();
        }
    }

    /// <summary>
    /// One tick: every enabled policy whose schedule is due or whose changed-data threshold is reached
    /// starts a run. The runs go on outside the policy lock (quiescing through agents can take up to
    /// their call timeouts), each policy's on its own: a slow agent delays only its own policy, never
    /// another's tick nor 'policy list'. A policy still running from before is not started again.
    /// The task completes when the runs this tick started have finished (tests await it; the timer does not).
    /// </summary>
    public Task RunDueAsync()
    {
        var started = new List<Task>();
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            var changed = false;
            foreach (var state in _policies.Values.Where(p => p.Definition.Enabled && !p.Running))
            {
                string? reason = null;
                try
                {
                    if (state.Schedule is not null && state.NextRun is { } next && next <= now)
                    {
                        reason = next < now - TickInterval - TickInterval
                            ? $"scheduled for {next:u}, missed while the server was down: one catch-up snapshot"
                            : "scheduled";
                    }
                    else if (state.Definition.ChangedBytes is { } threshold && ChangedSinceLast(state) is var bytes && bytes >= threshold)
                    {
                        reason = $"{ByteSize.Format(bytes)} changed since its last snapshot (threshold {ByteSize.Format(threshold)})";
                    }
                }
                catch (StorageException ex)
                {
                    Fail(state, now, ex);
                    changed = true;
                }

                if (state.Schedule is not null && (state.NextRun is null || state.NextRun <= now))
                {
                    state.NextRun = state.Schedule.Next(now);
                    changed = true;
                }

                if (reason is not null)
                {
                    state.Running = true;
                    started.Add(RunAsync(state, now, reason));
                }
            }

            if (changed)
            {
                Save();
            }
        }

        return Task.WhenAll(started);
    }

    /// <summary>Waits for the runs in progress (at shutdown, before the pool closes under them).</summary>
    public Task WhenIdleAsync()
    {
        lock (_lock)
        {
            return Task.WhenAll(_inFlight);
        }
    }

    /// <summary>One run of a policy the caller marked <see cref="PolicyState.Running"/> (under the lock); clears the mark.</summary>
    private Task RunAsync(PolicyState state, DateTimeOffset now, string reason)
    {
        var task = RunCoreAsync(state, now, reason);
        lock (_lock)
        {
            if (!task.IsCompleted)
            {
                _inFlight.Add(task);
                _ = task.ContinueWith(t => { lock (_lock) { _inFlight.Remove(t); } }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        return task;
    }

    private async Task RunCoreAsync(PolicyState state, DateTimeOffset now, string reason)
    {
        // Off the caller's thread at once: the tick holds the policy lock while it starts runs.
        await Task.Yield();
        try
        {
            PolicyRequest d;
            string name;
            lock (_lock)
            {
                d = state.Definition;
                name = NextName(d, now);
            }

            StorageException? error = null;
            try
            {
                reason = await TakeSnapshotAsync(d, name, reason);
            }
            catch (StorageException ex)
            {
                error = ex;
            }

            if (error is null && IndexesMail(d) && d.Hosts is { Count: > 0 } indexHosts && MailIndexer is not null)
            {
                // Queued, not awaited: the index is built in the background, after the resume.
                try
                {
                    MailIndexer.Enqueue([.. Members(d).Select(v => _pool.GetSnapshot($"{v}@{name}"))], indexHosts, $"policy:{d.Name}");
                }
                catch (StorageException ex)
                {
                    reason += $"; mail index not queued ({ex.Message})";
                }
            }

            if (error is null && Verifies(d) && d.Hosts is { Count: > 0 } hosts && Verifier is not null)
            {
                reason += await VerifyAsync(d, name, hosts);
            }

            lock (_lock)
            {
                if (!_policies.TryGetValue(d.Name, out var current) || current != state)
                {
                    // Deleted (or deleted and made again) while the agents were quiescing: what was cut stays, unmanaged.
                    _events.Record(error is null ? "snapshot.create" : "policy.error", error is null ? Address(d, name) : d.Name, $"policy:{d.Name}", error?.Message ?? $"{reason}; the policy was deleted meanwhile: the snapshot is not managed", error is null ? "ok" : "failed");
                    return;
                }

                if (error is not null)
                {
                    Fail(state, now, error);
                }
                else
                {
                    // Retargeted meanwhile: the snapshot is of the old target, which the policy no longer manages.
                    if (state.Definition.Volume == d.Volume && state.Definition.Group == d.Group)
                    {
                        state.Snapshots.Add(name);
                        state.LastSnapshotAt = now;
                    }

                    Act(state, now, "snapshot", Address(d, name), reason, "ok");
                    try
                    {
                        ApplyRetention(state, now);
                        state.LastError = null;
                    }
                    catch (StorageException ex)
                    {
                        Fail(state, now, ex);
                    }
                }

                Save();
            }
        }
        catch (Exception ex)
        {
            // Nobody awaits a timer's run: whatever went wrong is logged here or nowhere.
            PoliciesLog.RunFailed(_logger, ex, state.Definition.Name);
        }
        finally
        {
            lock (_lock)
            {
                state.Running = false;
            }
        }
    }

    /// <summary>Verifies the snapshot just cut (a group's members together) through the first of the policy's hosts that checks it; a verification that cannot run is reported, never fails the run (the snapshot exists).</summary>
    private async Task<string> VerifyAsync(PolicyRequest d, string name, IReadOnlyList<string> hosts)
    {
        // A group's cut is checked as one: a cluster's data and WAL on two members start only together.
        var what = string.Join(", ", Members(d));
        try
        {
            var record = d.Group is not null
                ? (await Verifier!.VerifyGroupAsync(d.Group, name, hosts, $"policy:{d.Name}", CancellationToken.None))[0]
                : await Verifier!.VerifyAsync($"{d.Volume}@{name}", hosts, $"policy:{d.Name}", CancellationToken.None);
            return $"; verification: {what}: {SnapshotVerifier.ToDto(record).Summary}";
        }
        catch (StorageException ex)
        {
            return $"; verification: {what}: not verified ({ex.Message})";
        }
    }

    private IReadOnlyList<string> Members(PolicyRequest d) =>
        d.Group is { } group ? _pool.Groups.FirstOrDefault(g => g.Name == group)?.Volumes ?? [] : [d.Volume!];

    private string NextName(PolicyRequest d, DateTimeOffset now)
    {
        var name = $"{d.Name}-{now.UtcDateTime:yyyyMMdd-HHmmss}";
        for (var i = 2; Exists(d, name); i++)
        {
            name = $"{d.Name}-{now.UtcDateTime:yyyyMMdd-HHmmss}-{i}";
        }

        return name;
    }

    /// <summary>Cuts the snapshot (through the policy's hosts' agents when it names any), outside the policy lock; returns the reason with the consistency.</summary>
    private async Task<string> TakeSnapshotAsync(PolicyRequest d, string name, string reason)
    {
        if (d.Hosts is { Count: > 0 } hosts && Agents is not null)
        {
            var (_, consistency) = await Agents.TakeAsync(d.Volume, d.Group, name, hosts, SnapshotCoordinator.CheckFallback(d.Fallback, SnapshotCoordinator.FallbackCrash), $"policy:{d.Name}", CancellationToken.None);
            return reason + $"; consistency: {consistency.Label}";
        }

        if (d.Group is { } group)
        {
            _pool.SnapshotGroup(group, name);
        }
        else
        {
            _pool.CreateSnapshot(d.Volume!, name);
        }

        return reason;
    }

    private void ApplyRetention(PolicyState state, DateTimeOffset now)
    {
        var d = state.Definition;
        var existing = OwnedSnapshots(state);
        state.Snapshots.RemoveAll(n => !existing.ContainsKey(n)); // deleted by hand meanwhile
        var keep = state.Retention.Keep([.. existing.Select(e => (e.Key, e.Value[0].CreatedAt))], state.Zone, d.PreferConsistent == true ? Ranks(existing) : null);
        foreach (var (name, members) in existing.OrderBy(e => e.Value[0].CreatedAt))
        {
            if (keep.Contains(name))
            {
                continue;
            }

            var why = Protection(members, now);
            if (why is not null)
            {
                if (state.ReportedSkips.Add(name))
                {
                    Act(state, now, "skip", Address(d, name), $"retention would delete it, but {why}; kept", "ok");
                }

                continue;
            }

            try
            {
                foreach (var member in members)
                {
                    _pool.DeleteSnapshot(member.Address);
                }
            }
            catch (StorageException ex) when (ex.Error is StorageError.Held or StorageError.HasDependents)
            {
                if (state.ReportedSkips.Add(name))
                {
                    Act(state, now, "skip", Address(d, name), $"retention would delete it, but {ex.Message}; kept", "ok");
                }

                continue;
            }

            state.Snapshots.Remove(name);
            state.ReportedSkips.Remove(name);
            Act(state, now, "delete", Address(d, name), "expired under the policy's retention", "ok");
        }
    }

    /// <summary>How consistent each snapshot is, for retention that prefers consistent ones: application 2, filesystem 1, crash (or unknown) 0.</summary>
    private Dictionary<string, int> Ranks(Dictionary<string, List<SnapshotInfo>> snapshots) =>
        snapshots.ToDictionary(
            e => e.Key,
            e => Agents?.ConsistencyOf(e.Value[0].Id)?.Level switch
            {
                ConsistencyRecord.Application => 2,
                ConsistencyRecord.FileSystem => 1,
                _ => 0,
            },
            StringComparer.Ordinal);

    private string? Protection(IReadOnlyList<SnapshotInfo> members, DateTimeOffset now)
    {
        foreach (var s in members)
        {
            if (s.Held || s.HoldUntil > now)
            {
                return $"{s.Address} is on hold";
            }

            if (_exports?.ExportsOfTarget(s.Address) is { Count: > 0 } exports)
            {
                return $"{s.Address} is exported ({string.Join(", ", exports)})";
            }

            if (_pool.Volumes.FirstOrDefault(v => v.Origin == s.Address) is { } view)
            {
                return $"view {view.Name} was made from {s.Address}";
            }

            if (IsProtected(s.Address) is { } reason)
            {
                return reason;
            }
        }

        return null;
    }

    /// <summary>The policy's snapshots that still exist, each with its member snapshots (one for a volume).</summary>
    private Dictionary<string, List<SnapshotInfo>> OwnedSnapshots(PolicyState state) =>
        TargetSnapshots(state.Definition, new HashSet<string>(state.Snapshots, StringComparer.Ordinal));

    /// <summary>The snapshots of the policy's volume or group (only those named in <paramref name="only"/> when given), each with its member snapshots.</summary>
    private Dictionary<string, List<SnapshotInfo>> TargetSnapshots(PolicyRequest d, HashSet<string>? only)
    {
        var volumes = d.Group is { } group
            ? _pool.Groups.FirstOrDefault(g => g.Name == group)?.Volumes ?? []
            : [d.Volume!];
        var result = new Dictionary<string, List<SnapshotInfo>>(StringComparer.Ordinal);
        foreach (var volume in volumes)
        {
            if (!_pool.TryGetVolume(volume, out _))
            {
                continue;
            }

            foreach (var s in _pool.ListSnapshots(volume).Where(s => only is null || only.Contains(s.Name)))
            {
                if (!result.TryGetValue(s.Name, out var list))
                {
                    result[s.Name] = list = [];
                }

                list.Add(s);
            }
        }

        return result;
    }

    private long ChangedSinceLast(PolicyState state)
    {
        var d = state.Definition;
        var volumes = d.Group is { } group
            ? _pool.Groups.FirstOrDefault(g => g.Name == group)?.Volumes ?? throw new StorageException(StorageError.NotFound, $"group {group} is gone")
            : [d.Volume!];
        var last = state.Snapshots.LastOrDefault(n => volumes.All(v => _pool.TryGetVolume(v, out _) && _pool.ListSnapshots(v).Any(s => s.Name == n)));
        long most = 0;
        foreach (var volume in volumes)
        {
            var changed = last is null
                ? _pool.GetVolume(volume).AllocatedBytes ?? 0
                : _pool.Diff(volume, last, null).Sum(r => r.LengthBytes);
            most = Math.Max(most, changed);
        }

        return most;
    }

    private bool Exists(PolicyRequest d, string name)
    {
        var volume = d.Group is { } group ? _pool.Groups.FirstOrDefault(g => g.Name == group)?.Volumes is { Count: > 0 } members ? members[0] : null : d.Volume;
        return volume is not null && _pool.TryGetVolume(volume, out _) && _pool.ListSnapshots(volume).Any(s => s.Name == name);
    }

    private static string Address(PolicyRequest d, string name) => d.Group is { } group ? $"{group}/{name}" : $"{d.Volume}@{name}";

    private void Fail(PolicyState state, DateTimeOffset now, StorageException ex)
    {
        state.LastError = ex.Message;
        Act(state, now, "error", null, ex.Message, "failed");
        PoliciesLog.PolicyFailed(_logger, state.Definition.Name, ex.Message);
    }

    private void Act(PolicyState state, DateTimeOffset now, string action, string? snapshot, string message, string outcome)
    {
        state.Activity.Add(new PolicyActivityDto(now, action, snapshot, message));
        if (state.Activity.Count > ActivityKept)
        {
            state.Activity.RemoveRange(0, state.Activity.Count - ActivityKept);
        }

        // Snapshots a policy makes or deletes are snapshot events like any other ('event list --kind snapshot'); the actor names the policy.
        var kind = action switch
        {
            "snapshot" => "snapshot.create",
            "delete" => "snapshot.delete",
            _ => $"policy.{action}",
        };
        _events.Record(kind, snapshot ?? state.Definition.Name, $"policy:{state.Definition.Name}", message, outcome);
    }

    private PolicyState Find(string name) =>
        _policies.TryGetValue(name, out var state)
            ? state
            : throw new StorageException(StorageError.NotFound, $"no policy {name}; 'tidemark policy list' shows them");

    private (Schedule? Schedule, TimeZoneInfo Zone) Validate(PolicyRequest r)
    {
        if (!NamePattern().IsMatch(r.Name))
        {
            throw new StorageException(StorageError.InvalidName, $"policy name '{r.Name}' must be 1-48 letters, digits, '-' or '_', starting with a letter or digit");
        }

        if ((r.Volume is null) == (r.Group is null))
        {
            throw new StorageException(StorageError.InvalidArgument, "a policy snapshots one volume or one group: give exactly one of volume and group");
        }

        if (r.Volume is not null)
        {
            var volume = _pool.GetVolume(r.Volume);
            if (r.ChangedBytes is not null && volume.AllocatedBytes is null)
            {
                throw new StorageException(StorageError.Unsupported, $"{r.Volume} was made by an older Tidemark that does not count changed data; use a schedule");
            }
        }
        else if (_pool.Groups.All(g => g.Name != r.Group))
        {
            throw new StorageException(StorageError.NotFound, $"no group {r.Group}; 'tidemark group list' shows them");
        }

        if (r.Hosts is { Count: > 0 } hosts)
        {
            _ = Agents?.CheckHosts(hosts);
        }

        _ = SnapshotCoordinator.CheckFallback(r.Fallback, SnapshotCoordinator.FallbackCrash);
        if (r.Verify == true && r.Hosts is not { Count: > 0 })
        {
            throw new StorageException(StorageError.InvalidArgument, "verification needs a host whose agent mounts and checks a view of each snapshot: give hosts, or verify off");
        }

        if (r.IndexMail == true && r.Hosts is not { Count: > 0 })
        {
            throw new StorageException(StorageError.InvalidArgument, "indexing mail after each snapshot needs the hosts whose agents declare the mail store: give hosts, or index-mail off");
        }

        if (r.Schedule is null && r.ChangedBytes is null)
        {
            throw new StorageException(StorageError.InvalidArgument, "a policy needs a schedule (e.g. 'every 15m', 'daily 02:30') or a changed-data trigger (e.g. 512M), or both");
        }

        if (r.ChangedBytes is <= 0)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the changed-data trigger must be a positive size, not {r.ChangedBytes} bytes");
        }

        foreach (var (what, value) in new[] { ("keep-last", r.KeepLast), ("keep-hourly", r.KeepHourly), ("keep-daily", r.KeepDaily), ("keep-weekly", r.KeepWeekly), ("keep-monthly", r.KeepMonthly) })
        {
            if (value is < 1 or > 100_000)
            {
                throw new StorageException(StorageError.InvalidArgument, $"{what} must be between 1 and 100000, not {value}");
            }
        }

        TimeZoneInfo zone;
        try
        {
            zone = r.TimeZone is null ? TimeZoneInfo.Utc : TimeZoneInfo.FindSystemTimeZoneById(r.TimeZone);
        }
        catch (TimeZoneNotFoundException)
        {
            throw new StorageException(StorageError.InvalidArgument, $"time zone '{r.TimeZone}' is unknown; use an IANA name such as Europe/Berlin or UTC");
        }

        return (r.Schedule is null ? null : Schedule.Parse(r.Schedule, zone), zone);
    }

    protected override TimeSpan Interval => TickInterval;

    protected override string WorkName => "Policy tick";

    // The timer does not wait for the runs: a policy stuck on a slow agent must not delay the next tick of the others.
    protected override void Tick() => _ = RunDueAsync();

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        try
        {
            await WhenIdleAsync().WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The host's shutdown timeout came first; the agents resume by themselves at their deadlines.
            PoliciesLog.StoppingWhileWaitingForAgents(_logger);
        }
    }

    // An older version kept policies in DATA/policies.json (the path given): imported once, then renamed.
    private void Load()
    {
        LegacyStateFile.Migrate(
            _pool.Control,
            PolicyRecord.Kind,
            _path,
            text => (JsonSerializer.Deserialize<List<PolicyRecord>>(text, ServerSettings.FileJson) ?? []).Select(r => new KeyValuePair<string, PolicyRecord>(r.Definition.Name, r)),
            _logger);
        foreach (var (name, record) in _pool.Control.List(PolicyRecord.Kind))
        {
            var state = PolicyState.From(record);
            var zone = state.Definition.TimeZone is null ? TimeZoneInfo.Utc : TimeZoneInfo.FindSystemTimeZoneById(state.Definition.TimeZone);
            state.Bind(state.Definition.Schedule is null ? null : Schedule.Parse(state.Definition.Schedule, zone), zone);
            _policies[name] = state;
        }
    }

    private void Save() =>
        _pool.Control.ReplaceAll(PolicyRecord.Kind, _policies.Select(p => new KeyValuePair<string, PolicyRecord>(p.Key, p.Value.ToRecord())));

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$")]
    private static partial Regex NamePattern();

    /// <summary>A policy with what it has done, in memory; persisted as a <see cref="PolicyRecord"/>.</summary>
    private sealed class PolicyState
    {
        public PolicyRequest Definition { get; set; } = null!;

        public DateTimeOffset? NextRun { get; set; }

        public DateTimeOffset? LastSnapshotAt { get; set; }

        public List<string> Snapshots { get; set; } = [];

        public string? LastError { get; set; }

        public List<PolicyActivityDto> Activity { get; set; } = [];

        public Schedule? Schedule { get; private set; }

        public TimeZoneInfo Zone { get; private set; } = TimeZoneInfo.Utc;

        public Retention Retention { get; private set; } = new(null, null, null, null, null);

        /// <summary>A run is in progress (guarded by the manager's lock): not started again until it ends.</summary>
        public bool Running { get; set; }

        /// <summary>Snapshots already reported as kept against retention (reported once, not every tick).</summary>
        public HashSet<string> ReportedSkips { get; } = new(StringComparer.Ordinal);

        public void Bind(Schedule? schedule, TimeZoneInfo zone)
        {
            Schedule = schedule;
            Zone = zone;
            var d = Definition;
            Retention = new Retention(d.KeepLast, d.KeepHourly, d.KeepDaily, d.KeepWeekly, d.KeepMonthly);
        }

        public PolicyDto ToDto() => new(Definition, NextRun, LastSnapshotAt, [.. Snapshots], LastError, [.. Activity]);

        public PolicyRecord ToRecord() => new(
            PolicyDefinitionRecord.From(Definition),
            NextRun,
            LastSnapshotAt,
            [.. Snapshots],
            LastError,
            [.. Activity.Select(a => new PolicyActivityRecord(a.Time, a.Action, a.Snapshot, a.Message))]);

        public static PolicyState From(PolicyRecord record) => new()
        {
            Definition = record.Definition.ToRequest(),
            NextRun = record.NextRun,
            LastSnapshotAt = record.LastSnapshotAt,
            Snapshots = [.. record.Snapshots ?? []],
            LastError = record.LastError,
            Activity = [.. (record.Activity ?? []).Select(a => new PolicyActivityDto(a.Time, a.Action, a.Snapshot, a.Message))],
        };
    }
}
