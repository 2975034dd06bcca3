using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Tidemark.Engine;
using Tidemark.Server.Agents;
using Tidemark.Replication;
using EventLog = Tidemark.Server.Events.EventLog;

namespace Tidemark.Server.Tests;

/// <summary>A snapshot's consistency record as it travels beside its replication stream (ADR 0015).</summary>
public sealed class ReplicatedLabelTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 12, 7, 8, 0, 0, TimeSpan.Zero));
    private readonly Pool _pool;
    private readonly EventLog _events;
    private readonly ServerIdentity _identity;

    public ReplicatedLabelTests()
    {
        _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 64L << 20, Clock = _clock.GetUtcNow });
        _events = new EventLog(_temp.Combine("events.jsonl"), _clock, NullLogger.Instance);
        _identity = ServerIdentity.LoadOrCreate(_temp.Combine("identity"));
    }

    public void Dispose()
    {
        _identity.Dispose();
        _events.Dispose();
        _pool.Dispose();
        _temp.Dispose();
    }

    private SnapshotCoordinator Coordinator() => new(_pool, new HostRegistry(_pool, _clock), _identity, _events, NullLogger.Instance, _clock);

    [Fact]
    public void Label_RoundTrips_ToTheSameRecordUnderTheSameId_CrashHasNone()
    {
        var coordinator = Coordinator();
        var id = Guid.NewGuid();
        var record = new ConsistencyRecord("application", "db1: postgresql: cluster main", ["db1"], 0.25, _clock.GetUtcNow(), new Dictionary<string, string> { ["db1/main"] = "START WAL LOCATION: 0/2000028" });
        _pool.Control.Put(ConsistencyRecord.Kind, id.ToString("N"), record);

        var label = coordinator.ReplicatedLabelOf(id);
        _pool.Control.Delete(ConsistencyRecord.Kind, id.ToString("N"));
        var problem = coordinator.AdoptReplicatedLabel(id, label!);

        Assert.Null(problem);
        var adopted = coordinator.ConsistencyOf(id)!;
        Assert.Equal(record.Label, adopted.Label);
        Assert.Equal(record.Hosts, adopted.Hosts);
        Assert.Equal(record.BackupLabels, adopted.BackupLabels);
        Assert.Null(coordinator.ReplicatedLabelOf(Guid.NewGuid()));
    }

    [Theory]
    [InlineData("not base64!", "does not parse")]
    [InlineData("e30=", "no known level")] // {}
    [InlineData("eyJsZXZlbCI6ImdyZWF0In0=", "no known level")] // {"level":"great"}
    [InlineData("WzFd", "does not parse")] // [1]
    public void Label_Malformed_RefusedWithTheReason_NothingKept(string label, string reason)
    {
        var coordinator = Coordinator();
        var id = Guid.NewGuid();

        var problem = coordinator.AdoptReplicatedLabel(id, label);

        Assert.Contains(reason, problem, StringComparison.Ordinal);
        Assert.Null(coordinator.ConsistencyOf(id));
    }

    [Fact]
    public void Label_TooLong_Refused()
    {
        var coordinator = Coordinator();
        var json = $"{{\"level\":\"crash\",\"detail\":\"{new string('x', SnapshotCoordinator.MaxReplicatedLabelBytes)}\",\"hosts\":[],\"at\":\"2026-12-07T08:00:00Z\"}}";

        var problem = coordinator.AdoptReplicatedLabel(Guid.NewGuid(), Convert.ToBase64String(Encoding.UTF8.GetBytes(json)));

        Assert.Contains("more than", problem, StringComparison.Ordinal);
    }
}
