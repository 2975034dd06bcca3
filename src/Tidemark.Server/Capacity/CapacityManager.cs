using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Events;
using Tidemark.Server.Metrics;

namespace Tidemark.Server.Capacity;

/// <summary>
/// Capacity on demand. Every <see cref="CheckInterval"/> (and on request) it looks at the pool and at
/// each volume with a policy: a pool past its threshold grows its last file store by a step (up to the
/// policy's maximum, and only as far as the file system holding the store has room), a volume past its
/// threshold grows its virtual size by a step (up to its maximum; iSCSI initiators get "capacity data
/// has changed"). A pool that is full or cannot grow is an event, once per episode, never a surprise:
/// writers get a clean "no space" error and nothing already written is touched. Policies are kept in
/// the pool as control records (<see cref="AutoGrowRecord"/>) and survive restarts.
/// </summary>
public sealed class CapacityManager : PeriodicService
{
    public static readonly TimeSpan DefaultCheckInterval = TimeSpan.FromSeconds(10);

    private const int BlockBytes = 4096;

    private readonly Pool _pool;
    private readonly EventLog _events;
    private readonly IoMetrics _io;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _path;
    private readonly Lock _lock = new();
    private AutoGrowDto? _poolPolicy;
    private readonly SortedDictionary<string, AutoGrowDto> _volumePolicies = new(StringComparer.Ordinal);
    private bool _poolFullReported;
    private bool _poolStuckReported;
    private long _noSpaceErrorsSeen;

    public CapacityManager(Pool pool, EventLog events, IoMetrics io, TimeProvider time, ILogger<CapacityManager> logger, string path)
        : base(time, logger)
    {
        _pool = pool;
        _events = events;
        _io = io;
        _time = time;
        _logger = logger;
        _path = path;
        Load();
    }

    public TimeSpan CheckInterval { get; init; } = DefaultCheckInterval;

    public CapacityPoliciesDto Policies
    {
        get
        {
            lock (_lock)
            {
                return new CapacityPoliciesDto(_poolPolicy, new Dictionary<string, AutoGrowDto>(_volumePolicies, StringComparer.Ordinal));
            }
        }
    }

    public AutoGrowDto? PoolPolicy
    {
        get
        {
            lock (_lock)
            {
                return _poolPolicy;
            }
        }
    }

    public AutoGrowDto? VolumePolicy(string volume)
    {
        lock (_lock)
        {
            return _volumePolicies.TryGetValue(volume, out var policy) ? policy : null;
        }
    }

    public void SetPoolPolicy(AutoGrowDto? policy)
    {
        if (policy is not null)
        {
            Check(policy, "the pool");
            if (!_pool.GetInfo().Stores.Any(s => s.Kind == StoreKind.File))
            {
                throw new StorageException(StorageError.Unsupported, "the pool has no file store to grow (block devices have a fixed size); add a file store with 'tidemark pool add-store'");
            }

            var capacity = _pool.GetInfo().Stores.Sum(s => s.CapacityBytes);
            if (policy.MaxBytes <= capacity)
            {
                throw new StorageException(StorageError.InvalidArgument, $"max {ByteSize.Format(policy.MaxBytes)} is not above the pool's capacity of {ByteSize.Format(capacity)}; nothing could grow");
            }
        }

        lock (_lock)
        {
            _poolPolicy = policy;
            _poolStuckReported = false;
            Save();
        }
    }

    public void SetVolumePolicy(string volume, AutoGrowDto? policy)
    {
        var v = _pool.GetVolume(volume);
        if (policy is not null)
        {
            Check(policy, $"volume {volume}");
            if (policy.MaxBytes <= v.SizeBytes)
            {
                throw new StorageException(StorageError.InvalidArgument, $"max {ByteSize.Format(policy.MaxBytes)} is not above {volume}'s size of {ByteSize.Format(v.SizeBytes)}; nothing could grow");
            }

            if (policy.StepBytes % v.LogicalBlockSizeBytes != 0 || policy.MaxBytes % v.LogicalBlockSizeBytes != 0)
            {
                throw new StorageException(StorageError.Misaligned, $"step and max must be multiples of {volume}'s block size ({v.LogicalBlockSizeBytes} bytes)");
            }

            if (v.AllocatedBytes is null)
            {
                throw new StorageException(StorageError.Unsupported, $"{volume} was made by an older Tidemark that did not count its used space; autogrow needs that count");
            }
        }

        lock (_lock)
        {
            if (policy is null)
            {
                _volumePolicies.Remove(volume);
            }
            else
            {
                _volumePolicies[volume] = policy;
            }

            Save();
        }
    }

    /// <summary>Forgets the policy of a volume that is gone (deleted through the API).</summary>
    public void Forget(string volume)
    {
        lock (_lock)
        {
            if (_volumePolicies.Remove(volume))
            {
                Save();
            }
        }
    }

    private static void Check(AutoGrowDto policy, string what)
    {
        if (policy.ThresholdPercent is < 1 or > 99)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the threshold for {what} must be a percentage between 1 and 99, not {policy.ThresholdPercent}");
        }

        if (policy.StepBytes <= 0)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the step for {what} must be a positive size such as 10G, not {policy.StepBytes} bytes");
        }
    }

    /// <summary>One pass over the pool and every volume policy; the background loop calls it on each tick.</summary>
    public void CheckNow()
    {
        lock (_lock)
        {
            CheckPool();
            foreach (var (name, policy) in _volumePolicies.ToList())
            {
                CheckVolume(name, policy);
            }
        }
    }

    private void CheckPool()
    {
        var info = _pool.GetInfo();
        var noSpaceErrors = _io.Devices.Sum(d => d.NoSpaceErrors);
        var writesFailed = noSpaceErrors > _noSpaceErrorsSeen;
        _noSpaceErrorsSeen = noSpaceErrors;
        var usedPercent = info.CapacityBytes == 0 ? 100 : 100.0 * info.UsedBytes / info.CapacityBytes;

        if (_poolPolicy is { } policy && usedPercent >= policy.ThresholdPercent)
        {
            TryGrowPool(info, policy, usedPercent);
            info = _pool.GetInfo();
        }

        // Full: less than 1 MiB or 0.1% left, or writers were refused for lack of space since the last
        // check (the file system under a file store can fill up before the pool's own accounting does).
        var full = writesFailed || info.FreeBytes < Math.Max(BlockBytes * 256L, info.CapacityBytes / 1000);
        if (full && !_poolFullReported)
        {
            _poolFullReported = true;
            _events.Record(
                "pool.full",
                null,
                "server",
                $"the pool is full ({ByteSize.Format(info.UsedBytes)} of {ByteSize.Format(info.CapacityBytes)} used): writes that need new space fail with 'no space' and nothing written is lost; free space by deleting snapshots or volumes, add a store ('tidemark pool add-store'), or set 'tidemark pool autogrow'",
                "failed");
        }
        else if (_poolFullReported && !writesFailed && info.FreeBytes >= info.CapacityBytes / 20)
        {
            // Hysteresis: "space available" only once a twentieth of the pool is free again.
            _poolFullReported = false;
            _events.Record("pool.space-available", null, "server", $"the pool has {ByteSize.Format(info.FreeBytes)} free again");
        }
    }

    private void TryGrowPool(PoolInfo info, AutoGrowDto policy, double usedPercent)
    {
        var store = info.Stores.LastOrDefault(s => s.Kind == StoreKind.File);
        if (store is null)
        {
            return;
        }

        // The maximum is what the administrator sizes: the stores together (the pool's own capacity
        // leaves out each store's header block).
        var room = policy.MaxBytes - info.Stores.Sum(s => s.CapacityBytes);
        if (room <= 0)
        {
            ReportStuck($"the pool is {usedPercent:F0}% used and already at its autogrow maximum of {ByteSize.Format(policy.MaxBytes)}; raise the maximum or add a store");
            return;
        }

        var growth = Math.Min(policy.StepBytes, room);
        growth -= growth % BlockBytes;
        var available = new DriveInfo(Path.GetDirectoryName(store.Path)!).AvailableFreeSpace;
        var unwritten = Math.Max(0, store.CapacityBytes - new FileInfo(store.Path).Length);
        if (growth <= 0 || available - unwritten < growth)
        {
            ReportStuck($"the pool is {usedPercent:F0}% used but the file system holding {store.Path} has only {ByteSize.Format(Math.Max(0, available - unwritten))} not yet promised to the pool; free space there or add a store elsewhere");
            return;
        }

        try
        {
            _pool.GrowStore(store.Index, store.CapacityBytes + growth);
        }
        catch (StorageException ex)
        {
            ReportStuck($"growing store {store.Index} ({store.Path}) failed: {ex.Message}");
            return;
        }

        _poolStuckReported = false;
        _events.Record("pool.grow", null, "server", $"the pool was {usedPercent:F0}% used (threshold {policy.ThresholdPercent}%): store {store.Index} grew by {ByteSize.Format(growth)} to {ByteSize.Format(store.CapacityBytes + growth)}");
    }

    private void ReportStuck(string message)
    {
        if (_poolStuckReported)
        {
            return;
        }

        _poolStuckReported = true;
        _events.Record("pool.grow", null, "server", message, "failed");
    }

    private void CheckVolume(string name, AutoGrowDto policy)
    {
        if (!_pool.TryGetVolume(name, out var volume))
        {
            _volumePolicies.Remove(name);
            Save();
            _events.Record("volume.autogrow", name, "server", $"volume {name} is gone; its autogrow policy was removed");
            return;
        }

        if (volume.AllocatedBytes is not { } allocated || volume.SizeBytes >= policy.MaxBytes)
        {
            return;
        }

        var usedPercent = 100.0 * allocated / volume.SizeBytes;
        if (usedPercent < policy.ThresholdPercent)
        {
            return;
        }

        // Taken before the resize: the volume object reports its new size afterwards.
        var oldSize = volume.SizeBytes;
        var newSize = Math.Min(oldSize + policy.StepBytes, policy.MaxBytes);
        try
        {
            _pool.ResizeVolume(name, newSize);
            _events.Record("volume.grow", name, "server", $"{name} was {usedPercent:F0}% allocated (threshold {policy.ThresholdPercent}%): grew from {ByteSize.Format(oldSize)} to {ByteSize.Format(newSize)}");
        }
        catch (StorageException ex)
        {
            _events.Record("volume.grow", name, "server", $"growing {name} to {ByteSize.Format(newSize)} failed: {ex.Message}", "failed");
        }
    }

    protected override TimeSpan Interval => CheckInterval;

    protected override string WorkName => "Capacity check";

    protected override void Tick() => CheckNow();

    private sealed record State(AutoGrowRecord? Pool, SortedDictionary<string, AutoGrowRecord> Volumes);

    // An older version kept the policies in DATA/capacity.json (the path given): imported once, then renamed.
    private void Load()
    {
        LegacyStateFile.Migrate(
            _pool.Control,
            AutoGrowRecord.Kind,
            _path,
            text =>
            {
                var state = JsonSerializer.Deserialize<State>(text, ServerSettings.FileJson);
                var records = (state?.Volumes ?? []).Select(v => new KeyValuePair<string, AutoGrowRecord>(AutoGrowRecord.VolumePrefix + v.Key, v.Value));
                return state?.Pool is { } pool ? records.Prepend(new(AutoGrowRecord.PoolName, pool)) : records;
            },
            _logger);
        foreach (var (name, record) in _pool.Control.List(AutoGrowRecord.Kind))
        {
            if (name == AutoGrowRecord.PoolName)
            {
                _poolPolicy = record.ToDto();
            }
            else if (name.StartsWith(AutoGrowRecord.VolumePrefix, StringComparison.Ordinal))
            {
                _volumePolicies[name[AutoGrowRecord.VolumePrefix.Length..]] = record.ToDto();
            }
        }
    }

    private void Save()
    {
        var records = _volumePolicies.Select(v => new KeyValuePair<string, AutoGrowRecord>(AutoGrowRecord.VolumePrefix + v.Key, AutoGrowRecord.From(v.Value)));
        _pool.Control.ReplaceAll(AutoGrowRecord.Kind, _poolPolicy is { } pool ? records.Prepend(new(AutoGrowRecord.PoolName, AutoGrowRecord.From(pool))) : records);
    }
}
