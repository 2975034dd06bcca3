using System.Diagnostics;
using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;

namespace Tidemark.Interop.Tests;

/// <summary>
/// PostgreSQL with its data directory on ext4 on a Tidemark volume, a snapshot taken under pgbench
/// load without any quiescing, and a second PostgreSQL started on a view of that snapshot: the
/// crash-consistent image must recover into a database that passes amcheck and holds every
/// transaction committed before the snapshot.
/// </summary>
public sealed class PostgresSnapshotTests
{
    // Thin: only what PostgreSQL writes takes pool space. pgbench scale 10 is ~160 MB of tables
    // plus its WAL; 2 GiB leaves room for WAL that a slow checkpoint has not recycled yet.
    private const long VolumeBytes = 2L << 30;
    private const int Scale = 10;

    [Fact]
    public async Task SnapshotView_PostgresUnderPgbenchLoad_RecoversIntactWithCommittedTransactions()
    {
        var bin = HostRequirements.RequirePostgres();
        using var temp = new TempDirectory();
        await using var pg = await Ext4Volume.StartAsync(temp, "pg", VolumeBytes, storeCapacity: "6G");
        var (client, live) = (pg.Client, pg.Live);
        await using var primary = await pg.StartPostgresAsync(bin, temp, Scale);
        await primary.QueryAsync("CHECKPOINT");

        var (committedBeforeSnapshot, loadOutput) = await SnapshotUnderLoadAsync(primary, () => client.CreateSnapshotAsync("pg", "under-load"));
        var committedAtEnd = await primary.CountAsync("pgbench_history");

        var clone = await PostgresClone.StartOnViewAsync(client, "pg@under-load", bin, temp);
        await primary.StopAsync();

        Assert.Contains("database system was not properly shut down; automatic recovery in progress", clone.Log, StringComparison.Ordinal);
        clone.AssertIntact(committedBeforeSnapshot, loadOutput);
        Assert.Equal((Scale * 100_000L, (long)Scale), (clone.Accounts, clone.Branches));
        Assert.True(clone.CommittedTransactions < committedAtEnd, $"the clone is not a point-in-time image: {clone.CommittedTransactions} history rows, {committedAtEnd} at the end of the load\npgbench: {loadOutput}");
    }

    /// <summary>
    /// pgbench -T 20 -c 4 in the background; after 6 s of load (and at least some commits), counts
    /// the committed transactions and takes the snapshot at once (here: no checkpoint, no freeze;
    /// AgentPostgresTests: through the agent), then lets pgbench run to its end.
    /// </summary>
    internal static async Task<(long CommittedBeforeSnapshot, string LoadOutput)> SnapshotUnderLoadAsync(PostgresInstance primary, Func<Task> snapshot, int loadSeconds = 20)
    {
        using var load = primary.StartClient("pgbench", "-T", $"{loadSeconds}", "-c", "4", "-j", "2", "postgres");
        var stdout = load.StandardOutput.ReadToEndAsync();
        var stderr = load.StandardError.ReadToEndAsync();
        try
        {
            var started = Stopwatch.StartNew();
            long committed;
            do
            {
                await Task.Delay(500);
                if (load.HasExited)
                {
                    Assert.Fail($"pgbench ended before the snapshot:\n{await stdout}\n{await stderr}");
                }

                committed = await primary.CountAsync("pgbench_history");
            }
            while ((committed < 200 || started.Elapsed < TimeSpan.FromSeconds(6)) && started.Elapsed < TimeSpan.FromSeconds(14));

            Assert.True(committed > 0, "pgbench committed nothing in 14 s");
            await snapshot();
            Assert.False(load.HasExited, "pgbench had already ended when the snapshot was taken: the snapshot was not under load");
            await load.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(90));
            var output = $"{await stdout}\n{await stderr}";
            Assert.True(load.ExitCode == 0, $"pgbench exited with {load.ExitCode}:\n{output}");
            return (committed, output);
        }
        finally
        {
            if (!load.HasExited)
            {
                load.Kill(entireProcessTree: true);
                await load.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
    }
}
