using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Engine;
using Tidemark.Replication;
using Tidemark.Server.Agents;
using Tidemark.Server.Events;
using Tidemark.Server.Jobs;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The server's stop ends the mail index builds in flight (docs/adr/0012) instead of leaving them to
/// run while the pool closes: the stop's token reaches the agent call, so a host that takes the
/// connection and never answers does not hold the stop for the call's timeout.
/// </summary>
public sealed class MailIndexerStopTests
{
    [Fact]
    public async Task Stop_AgentCallInFlight_CancelledNotWaitedOut_SkippedWithAnEvent()
    {
        using var temp = new TempDirectory();
        using var pool = Pool.Create(temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 256L << 20 });
        using var events = new EventLog(temp.Combine("events.jsonl"), TimeProvider.System, NullLogger.Instance);
        using var silent = SilentAgent.Start();
        using var identity = ServerIdentity.LoadOrCreate(temp.Combine("identity"));
        var hosts = new HostRegistry(pool, TimeProvider.System);
        silent.AddTo(hosts, "silent", identity.Fingerprint);
        var exports = new ExportRegistry(pool, temp.Combine("exports.json"), NullLogger.Instance);
        var agents = new AgentChannel(pool, exports, hosts, identity, events, NullLogger.Instance, TimeProvider.System);
        var indexer = new MailIndexer(agents, new JobManager(pool, events, TimeProvider.System)) { ProbeTimeout = TimeSpan.FromMinutes(10) };
        pool.CreateVolume("mail", 64L << 20);
        var snapshot = pool.CreateSnapshot("mail", "s1");

        indexer.Enqueue([snapshot], ["silent"], "policy:p");
        using var connection = await silent.Accepted.WaitAsync(TimeSpan.FromSeconds(30));
        await indexer.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        indexer.Enqueue([pool.CreateSnapshot("mail", "s2")], ["silent"], "policy:p");

        var indexed = events.Query(kind: "mail.index");
        Assert.Contains(indexed, e => e.Subject == "mail@s1" && e.Outcome == "skipped" && e.Message == "not indexed on host silent: the server stopped before its build began");
        Assert.Contains(indexed, e => e.Subject == "mail@s2" && e.Outcome == "skipped" && e.Message == "not indexed on host silent: the server stopped before its turn");
        Assert.Equal(["mail"], pool.Volumes.Select(v => v.Name));
    }
}
