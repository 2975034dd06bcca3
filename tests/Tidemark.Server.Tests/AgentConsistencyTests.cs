using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Tidemark.Agent;
using Tidemark.Api;
using Tidemark.Server.Agents;

namespace Tidemark.Server.Tests;

/// <summary>
/// How the consistency of a snapshot's parts combines (ADR 0015): a snapshot is only as consistent
/// as its weakest part. On one host the file-system freeze is the ground the applications stand on
/// and every application part claims a level (PostgreSQL in backup mode "application", cut
/// atomically "filesystem"): the weakest claim wins. Across hosts the weakest host wins.
/// </summary>
public sealed class AgentConsistencyTests
{
    [Fact]
    public void Postgres_BackupModeAndAtomicCutInOneCut_FileSystem_ItemsNameEveryCluster()
    {
        var both = PostgresPlugin.Quiesced([("main", new NpgsqlConnection())], ["fast"], TimeSpan.FromMinutes(5), NullLogger.Instance)!;
        var backup = PostgresPlugin.Quiesced([("main", new NpgsqlConnection())], [], TimeSpan.FromMinutes(5), NullLogger.Instance)!;
        var atomic = PostgresPlugin.Quiesced([], ["fast"], TimeSpan.FromMinutes(5), NullLogger.Instance)!;

        Assert.Equal(ConsistencyLevel.FileSystem, both.Consistency);
        Assert.Equal(["postgresql: cluster main", "postgresql: cluster fast (atomic cut, no backup mode)"], both.Items);
        Assert.False(both.UnderApplications);
        Assert.Equal(ConsistencyLevel.Application, backup.Consistency);
        Assert.Equal(ConsistencyLevel.FileSystem, atomic.Consistency);
        Assert.Null(PostgresPlugin.Quiesced([], [], TimeSpan.FromMinutes(5), NullLogger.Instance));
    }

    [Fact]
    public async Task Quiesce_FreezeUnderApplications_WeakestApplicationPartWins()
    {
        var freeze = new Part(ConsistencyLevel.FileSystem, "/srv/pg (ext4)", underApplications: true);
        var backup = new Part(ConsistencyLevel.Application, "postgresql: cluster main");
        var atomic = new Part(ConsistencyLevel.FileSystem, "postgresql: cluster fast (atomic cut, no backup mode)");

        var freezeAlone = await QuiesceAsync(freeze);
        var withBackup = await QuiesceAsync(freeze, backup);
        var withBoth = await QuiesceAsync(freeze, backup, atomic);
        var withAtomic = await QuiesceAsync(atomic, freeze);

        Assert.Equal(ConsistencyLevel.FileSystem, freezeAlone.Consistency);
        Assert.Equal(ConsistencyLevel.Application, withBackup.Consistency);
        Assert.Equal(ConsistencyLevel.FileSystem, withBoth.Consistency);
        Assert.Equal(["/srv/pg (ext4)", "postgresql: cluster main", "postgresql: cluster fast (atomic cut, no backup mode)"], withBoth.Quiesced);
        Assert.Equal(ConsistencyLevel.FileSystem, withAtomic.Consistency);
    }

    [Fact]
    public void SnapshotLevel_SeveralHosts_WeakestHostWins_UnknownIsCrash()
    {
        Assert.Equal(ConsistencyLevel.Application, SnapshotCoordinator.Level([Answer("application"), Answer("application")]));
        Assert.Equal(ConsistencyLevel.FileSystem, SnapshotCoordinator.Level([Answer("application"), Answer("filesystem")]));
        Assert.Equal(ConsistencyLevel.FileSystem, SnapshotCoordinator.Level([Answer("filesystem"), Answer("application")]));
        Assert.Equal(ConsistencyLevel.Crash, SnapshotCoordinator.Level([Answer("application"), Answer("fully")]));
        Assert.Equal(ConsistencyLevel.Crash, ConsistencyLevel.Weakest([]));
    }

    private static QuiesceResultDto Answer(string level) => new("s", level, "d", [], DateTimeOffset.UnixEpoch, 10);

    private static async Task<QuiesceResultDto> QuiesceAsync(params Part[] parts)
    {
        await using var sessions = new QuiesceSessions([.. parts.Select(p => new Plugin(p))], TimeSpan.FromMinutes(5), TimeProvider.System, NullLogger.Instance);
        return await sessions.QuiesceAsync(new QuiesceRequest(["pg"]), CancellationToken.None);
    }

    private sealed class Plugin(Part part) : IQuiescePlugin
    {
        public string Name => part.Items[0];

        public Task<IQuiesced?> QuiesceAsync(IReadOnlySet<string> volumes, CancellationToken ct) => Task.FromResult<IQuiesced?>(part);
    }

    private sealed class Part(string consistency, string item, bool underApplications = false) : IQuiesced
    {
        public string Consistency => consistency;

        public bool UnderApplications => underApplications;

        public IReadOnlyList<string> Items => [item];

        public Task ResumeAsync() => Task.CompletedTask;
    }
}
