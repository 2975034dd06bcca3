using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Agents;
using Tidemark.Server.Events;
using Tidemark.Server.Policies;
using Tidemark.Replication;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The policy runner against a real pool, driven by a fake clock (no sleeps).</summary>
public sealed class PolicyManagerTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 11, 24, 8, 0, 0, TimeSpan.Zero));
    private readonly Pool _pool;
    private readonly EventLog _events;

    public PolicyManagerTests()
    {
        _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 256L << 20, Clock = _clock.GetUtcNow });
        _events = new EventLog(_temp.Combine("events.jsonl"), _clock, NullLogger.Instance);
        _pool.CreateVolume("mail", 64L << 20);
    }

    public void Dispose()
    {
        _events.Dispose();
        _pool.Dispose();
        _temp.Dispose();
    }

    private PolicyManager Manager() => new(_pool, _events, null, _clock, NullLogger.Instance, _temp.Combine("policies.json"));

    private List<string> Snapshots(string volume = "mail") => [.. _pool.ListSnapshots(volume).Select(s => s.Name)];

    [Fact]
    public async Task Hourly_WithKeepLast_TakesOnSchedule_DeletesOnlyItsOwn_AndSkipsHeld()
    {
        var manager = Manager();
        _pool.CreateSnapshot("mail", "manual");
        manager.Create(new PolicyRequest("hourly", Volume: "mail", Schedule: "hourly", KeepLast: 3));

        await manager.RunDueAsync(); // 08:00, created at 08:00: next run 09:00
        var atStart = Snapshots().Count;
        for (var hour = 0; hour < 5; hour++)
        {
            _clock.Advance(TimeSpan.FromHours(1));
            await manager.RunDueAsync();
            if (hour == 0)
            {
                _pool.HoldSnapshot($"mail@{manager.Get("hourly").Snapshots[0]}", null, "audit");
            }
        }

        var policy = manager.Get("hourly");
        Assert.Equal(1, atStart);
        Assert.Contains("manual", Snapshots());
        Assert.Equal(["hourly-20261124-090000", "hourly-20261124-110000", "hourly-20261124-120000", "hourly-20261124-130000"], policy.Snapshots);
        Assert.Equal(5, Snapshots().Count); // manual, the held 09:00 one, and the newest three
        Assert.Single(policy.Activity, a => a.Action == "skip");
        Assert.Equal(new DateTimeOffset(2026, 11, 24, 14, 0, 0, TimeSpan.Zero), policy.NextRun);
        Assert.Contains(_events.Query(kind: "snapshot.delete"), e => e.Actor == "policy:hourly");
    }

    [Fact]
    public async Task AfterThreeDaysDown_OneCatchUpSnapshot_NotABurst()
    {
        var manager = Manager();
        manager.Create(new PolicyRequest("every15", Volume: "mail", Schedule: "every 15m"));

        _clock.Advance(TimeSpan.FromDays(3));
        var restarted = Manager(); // state came back from the pool
        await restarted.RunDueAsync();
        await restarted.RunDueAsync();

        var policy = restarted.Get("every15");
        Assert.Single(policy.Snapshots);
        Assert.Contains("missed while the server was down", policy.Activity.Single().Message, StringComparison.Ordinal);
        Assert.True(policy.NextRun > _clock.GetUtcNow());
    }

    [Fact]
    public async Task ChangedDataTrigger_FiresAtThresholdAndNotBefore()
    {
        var manager = Manager();
        manager.Create(new PolicyRequest("churn", Volume: "mail", ChangedBytes: 4L << 20));
        var volume = _pool.GetVolume("mail");

        volume.Write(0, new byte[3 << 20], false);
        await manager.RunDueAsync();
        var below = Snapshots().Count;
        volume.Write(3L << 20, new byte[1 << 20], false);
        await manager.RunDueAsync();
        var baseline = Snapshots().Count;
        volume.Write(0, new byte[2 << 20], false); // 2 MiB changed since the policy's snapshot
        await manager.RunDueAsync();
        var notYet = Snapshots().Count;
        volume.Write(8L << 20, new byte[2 << 20], false);
        await manager.RunDueAsync();

        Assert.Equal(0, below);
        Assert.Equal(1, baseline);
        Assert.Equal(1, notYet);
        Assert.Equal(2, Snapshots().Count);
    }

    [Fact]
    public async Task GroupPolicy_SnapshotsAndExpiresMembersTogether_AndSurvivesRestart()
    {
        _pool.CreateVolume("db", 16L << 20);
        _pool.CreateGroup("app", ["mail", "db"]);
        var manager = Manager();
        manager.Create(new PolicyRequest("app", Group: "app", Schedule: "every 10m", KeepLast: 2));
        for (var i = 0; i < 4; i++)
        {
            _clock.Advance(TimeSpan.FromMinutes(10));
            await manager.RunDueAsync();
        }

        var again = Manager().Get("app");

        Assert.Equal(2, again.Snapshots.Count);
        Assert.Equal(again.Snapshots, Snapshots("mail"));
        Assert.Equal(again.Snapshots, Snapshots("db"));
        Assert.All(_pool.ListSnapshots("db"), s => Assert.Equal($"app/{s.Name}", s.GroupSnapshot));
    }

    [Fact]
    public async Task Failure_IsRecordedAndTheNextRunTriesAgain()
    {
        var manager = Manager();
        manager.Create(new PolicyRequest("p", Volume: "mail", Schedule: "every 5m"));
        _pool.CreateSnapshot("mail", "p-20261124-080500"); // the name the next run will want... taken by hand

        _clock.Advance(TimeSpan.FromMinutes(5));
        await manager.RunDueAsync();

        var policy = manager.Get("p");
        Assert.Null(policy.LastError); // it picked another name instead of failing
        Assert.Equal("p-20261124-080500-2", policy.Snapshots.Single());
    }

    [Fact]
    public async Task PreferConsistent_KeepsThePeriodsApplicationConsistentSnapshot_NotTheNewest()
    {
        using var identity = ServerIdentity.LoadOrCreate(_temp.Combine("identity"));
        var manager = new PolicyManager(_pool, _events, null, _clock, NullLogger.Instance, _temp.Combine("policies.json"))
        {
            Agents = new SnapshotCoordinator(_pool, new HostRegistry(_pool, _clock), identity, _events, NullLogger.Instance, _clock),
        };
        manager.Create(new PolicyRequest("prefer", Volume: "mail", Schedule: "hourly", KeepLast: 1, KeepDaily: 1, PreferConsistent: true));
        manager.Create(new PolicyRequest("newest", Volume: "mail", Schedule: "hourly", KeepLast: 1, KeepDaily: 1));

        for (var hour = 9; hour <= 11; hour++)
        {
            _clock.Advance(TimeSpan.FromHours(1));
            await manager.RunDueAsync();
            if (hour == 10)
            {
                // What a snapshot through an agent with PostgreSQL records (SnapshotCoordinator): here written directly.
                var batch = new Tidemark.Engine.Control.ControlBatch();
                foreach (var s in _pool.ListSnapshots("mail"))
                {
                    batch.Put(ConsistencyRecord.Kind, s.Id.ToString("N"), new ConsistencyRecord(ConsistencyRecord.Application, "db1: postgresql: cluster main", ["db1"], 0.2, _clock.GetUtcNow()));
                }

                _pool.Control.Update(batch);
            }
        }

        // Keep-last keeps 11:00 in both; the day's snapshot kept is the application-consistent 10:00 one only when preferred.
        Assert.Equal(["prefer-20261124-100000", "prefer-20261124-110000"], manager.Get("prefer").Snapshots);
        Assert.Equal(["newest-20261124-110000"], manager.Get("newest").Snapshots);
        Assert.Equal(3, Snapshots().Count);
    }

    [Fact]
    public async Task SlowAgent_HoldsOnlyItsOwnPolicy_NotAnotherPolicysTick_NorTheList()
    {
        // An "agent" that accepts the connection and never answers: the quiesce call hangs until it hangs up.
        using var slow = SilentAgent.Start();
        using var identity = ServerIdentity.LoadOrCreate(_temp.Combine("identity"));
        var hosts = new HostRegistry(_pool, _clock);
        slow.AddTo(hosts, "slow", identity.Fingerprint);
        _pool.CreateVolume("db", 64L << 20);
        var manager = new PolicyManager(_pool, _events, null, _clock, NullLogger.Instance, _temp.Combine("policies.json"))
        {
            Agents = new SnapshotCoordinator(_pool, hosts, identity, _events, NullLogger.Instance, _clock),
        };
        manager.Create(new PolicyRequest("app", Volume: "db", Schedule: "every 5m", Hosts: ["slow"]));
        manager.Create(new PolicyRequest("plain", Volume: "mail", Schedule: "every 5m"));

        _clock.Advance(TimeSpan.FromMinutes(5));
        var tick = manager.RunDueAsync();
        var held = await slow.Accepted.WaitAsync(TimeSpan.FromSeconds(60)); // app's quiesce call is in progress now
        try
        {
            // The other policy's run finishes and the list answers while the agent holds 'app'.
            for (var i = 0; i < 600 && manager.List().Single(p => p.Definition.Name == "plain").Snapshots.Count == 0; i++)
            {
                await Task.Delay(50);
            }

            Assert.Single(manager.Get("plain").Snapshots);
            Assert.Empty(manager.Get("app").Snapshots);
            Assert.False(tick.IsCompleted);

            // The next tick runs 'plain' again and does not start 'app' a second time; a run by hand is refused.
            _clock.Advance(TimeSpan.FromMinutes(5));
            await manager.RunDueAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.Equal(2, manager.Get("plain").Snapshots.Count);
            var busy = await Assert.ThrowsAsync<StorageException>(() => manager.RunNowAsync("app"));
            Assert.Equal(StorageError.Busy, busy.Error);
        }
        finally
        {
            held.Dispose(); // the agent hangs up: the quiesce fails and the policy's fallback (crash) applies
        }

        await tick.WaitAsync(TimeSpan.FromSeconds(120));
        var app = manager.Get("app");
        var snapshot = Assert.Single(app.Snapshots);
        Assert.Null(app.LastError);
        var id = _pool.ListSnapshots("db").Single(s => s.Name == snapshot).Id;
        Assert.Equal("crash", manager.Agents!.ConsistencyOf(id)!.Level);
    }

    [Theory]
    [InlineData("bad name", "mail", null, "every 5m", null, "invalid-name")]
    [InlineData("p", null, null, "every 5m", null, "invalid-argument")]
    [InlineData("p", "mail", "g", "every 5m", null, "invalid-argument")]
    [InlineData("p", "nope", null, "every 5m", null, "not-found")]
    [InlineData("p", "mail", null, null, null, "invalid-argument")]
    [InlineData("p", "mail", null, "every now and then", null, "invalid-argument")]
    [InlineData("p", "mail", null, "every 5m", "Mars/Olympus", "invalid-argument")]
    public void Create_BadDefinition_IsRefusedAndNothingIsStored(string name, string? volume, string? group, string? schedule, string? zone, string code)
    {
        var manager = Manager();

        var error = Assert.Throws<StorageException>(() => manager.Create(new PolicyRequest(name, volume, group, schedule, zone)));

        Assert.Equal(code, ErrorCodes.For(error.Error));
        Assert.Empty(manager.List());
        Assert.Empty(Manager().List());
    }

    [Fact]
    public void TargetedVolume_CannotBeDeletedWhileAPolicyExists()
    {
        var manager = Manager();
        manager.Create(new PolicyRequest("p", Volume: "mail", Schedule: "hourly"));

        var error = Assert.Throws<StorageException>(() => manager.ThrowIfTargeted(volume: "mail"));
        manager.Delete("p");
        manager.ThrowIfTargeted(volume: "mail");

        Assert.Equal(StorageError.HasDependents, error.Error);
        Assert.Contains("policy delete", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void IndexMail_OnByDefaultWithHosts_OffSwitchPersists_OnWithoutHostsRefused()
    {
        Assert.True(PolicyManager.IndexesMail(new PolicyRequest("p", Hosts: ["app"])));
        Assert.False(PolicyManager.IndexesMail(new PolicyRequest("p", Hosts: ["app"], IndexMail: false)));
        Assert.False(PolicyManager.IndexesMail(new PolicyRequest("p")));

        var manager = Manager();
        var error = Assert.Throws<StorageException>(() => manager.Create(new PolicyRequest("indexed", Volume: "mail", Schedule: "hourly", IndexMail: true)));
        Assert.Equal(StorageError.InvalidArgument, error.Error);
        Assert.Contains("index-mail off", error.Message, StringComparison.Ordinal);

        manager.Create(new PolicyRequest("quiet", Volume: "mail", Schedule: "hourly", IndexMail: false));
        Assert.False(Manager().Get("quiet").Definition.IndexMail);
    }
}
