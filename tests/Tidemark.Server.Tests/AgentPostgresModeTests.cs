using Tidemark.Agent;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The PostgreSQL plugin's atomic-cut mode (ADR 0015): without backup mode a snapshot is a valid
/// copy of a cluster only when its data directory, its WAL (pg_wal may link elsewhere) and every
/// tablespace are in the same atomic cut, so the plugin refuses a cut that leaves one out and says
/// which and where. The mode is validated where agent.json is read. The real PostgreSQL under
/// pgbench is in the interop tests (AgentPostgresTests).
/// </summary>
public sealed class AgentPostgresModeTests
{
    private static readonly AgentConfig Config = new()
    {
        Mounts = [new AgentMountEntry("/srv/pg", "pgdata"), new AgentMountEntry("/srv/wal", "pgwal"), new AgentMountEntry("/srv/ts", "pgts")],
    };

    [Fact]
    public void AtomicCutProblem_EveryDirectoryInTheCut_None()
    {
        var paths = new List<(string, string)> { ("data directory", "/srv/pg/data"), ("WAL", "/srv/wal/pg_wal"), ("tablespace at /srv/ts/t1", "/srv/ts/t1") };

        Assert.Null(PostgresPlugin.AtomicCutProblem(Config, "main", paths, new HashSet<string> { "pgdata", "pgwal", "pgts" }));
    }

    [Fact]
    public void AtomicCutProblem_WalOnAVolumeLeftOutAndTablespaceOnNoMount_NamesEachAndTheWayOut()
    {
        var paths = new List<(string, string)> { ("data directory", "/srv/pg/data"), ("WAL", "/srv/wal/pg_wal"), ("tablespace at /var/ts", "/var/ts") };

        var problem = PostgresPlugin.AtomicCutProblem(Config, "main", paths, new HashSet<string> { "pgdata" });

        Assert.NotNull(problem);
        Assert.StartsWith("postgresql cluster main (mode atomic-cut): ", problem, StringComparison.Ordinal);
        Assert.Contains("its WAL (/srv/wal/pg_wal) is on volume pgwal, not in this cut", problem, StringComparison.Ordinal);
        Assert.Contains("its tablespace at /var/ts (/var/ts) is on no declared mount", problem, StringComparison.Ordinal);
        Assert.DoesNotContain("data directory", problem, StringComparison.Ordinal);
        Assert.Contains("snapshot its volumes as one group", problem, StringComparison.Ordinal);
        Assert.Contains("set its mode to backup", problem, StringComparison.Ordinal);
    }

    [Fact]
    public void ClusterPaths_PgWalLinkedOutAndTablespaceLink_FinalTargets()
    {
        using var temp = new TempDirectory();
        var data = temp.CreateDirectory("data");
        var wal = temp.CreateDirectory("wal");
        var tablespace = temp.CreateDirectory("ts");
        Directory.CreateSymbolicLink(Path.Combine(data, "pg_wal"), wal);
        var tablespaceLink = temp.Combine("ts-link");
        Directory.CreateSymbolicLink(tablespaceLink, tablespace);

        var paths = PostgresPlugin.ClusterPaths(data, [tablespaceLink]);

        Assert.Equal([("data directory", data), ("WAL", wal), ($"tablespace at {tablespaceLink}", tablespace)], paths);
    }

    [Fact]
    public void ClusterPaths_PgWalInsideTheDataDirectory_DataDirectoryAlone()
    {
        using var temp = new TempDirectory();
        var data = temp.CreateDirectory("data");
        Directory.CreateDirectory(Path.Combine(data, "pg_wal"));

        Assert.Equal([("data directory", data)], PostgresPlugin.ClusterPaths(data, []));
    }

    [Fact]
    public async Task Cli_AgentPairPostgresMode_StoredPerCluster_BadInputExit2NothingWritten()
    {
        using var temp = new TempDirectory();
        var fingerprint = new string('e', 64);
        var paired = temp.Combine("agent");
        var pair = await CliProcess.RunAsync("agent", "pair", "--agent-dir", paired, "--server-fingerprint", fingerprint, "--listen", "127.0.0.1:0", "--postgres", "main:Host=/run/postgresql", "--postgres-mode", "atomic-cut");
        var before = await File.ReadAllTextAsync(AgentConfig.PathIn(paired));
        var unknown = await CliProcess.RunAsync("agent", "pair", "--agent-dir", paired, "--server-fingerprint", fingerprint, "--postgres", "main:Host=/tmp", "--postgres-mode", "fast");
        var alone = await CliProcess.RunAsync("agent", "pair", "--agent-dir", paired, "--server-fingerprint", fingerprint, "--postgres-mode", "backup");

        pair.AssertSuccess();
        Assert.Equal(AgentPostgresEntry.AtomicCutMode, Assert.Single(AgentConfig.Load(paired).Postgres).Mode);
        Assert.True(unknown.ExitCode == 2, $"exit {unknown.ExitCode}: {unknown.StandardError}");
        Assert.Contains("--postgres-mode takes backup or atomic-cut, not 'fast'", unknown.StandardError, StringComparison.Ordinal);
        Assert.True(alone.ExitCode == 2, $"exit {alone.ExitCode}: {alone.StandardError}");
        Assert.Contains("--postgres-mode applies to the clusters given with --postgres", alone.StandardError, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllTextAsync(AgentConfig.PathIn(paired)));
    }

    [Fact]
    public void Load_ModeAbsentIsBackup_UnknownModeRefusedWithTheChoices()
    {
        using var temp = new TempDirectory();
        var good = temp.CreateDirectory("good");
        File.WriteAllText(AgentConfig.PathIn(good), """{ "postgres": [{ "name": "main", "connectionString": "Host=/run/postgresql" }, { "name": "fast", "connectionString": "Host=/run/postgresql", "mode": "atomic-cut" }] }""");
        var bad = temp.CreateDirectory("bad");
        File.WriteAllText(AgentConfig.PathIn(bad), """{ "postgres": [{ "name": "main", "connectionString": "Host=/run/postgresql", "mode": "snapshot" }] }""");

        var loaded = AgentConfig.Load(good);
        var refused = Assert.Throws<ArgumentException>(() => AgentConfig.Load(bad));

        Assert.Equal([AgentPostgresEntry.BackupMode, AgentPostgresEntry.AtomicCutMode], loaded.Postgres.Select(p => p.Mode));
        Assert.Contains("postgres main: mode must be backup or atomic-cut, not 'snapshot'", refused.Message, StringComparison.Ordinal);
    }
}
