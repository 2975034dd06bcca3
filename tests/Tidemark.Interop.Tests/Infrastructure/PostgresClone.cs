using Tidemark.Api;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>What a PostgreSQL started on a writable view of a snapshot showed, stopped again.</summary>
internal sealed record PostgresCloneCheck(ProcessResult Amcheck, long Accounts, long Branches, long CommittedTransactions, string Balanced, string Log)
{
    /// <summary>pg_amcheck clean, pgbench's books balanced, and no transaction committed before the snapshot missing.</summary>
    public void AssertIntact(long committedBeforeSnapshot, string loadOutput)
    {
        Assert.True(Amcheck.ExitCode == 0, $"pg_amcheck on the clone: {Amcheck.StandardOutput}\n{Amcheck.StandardError}");
        Assert.Equal("t", Balanced);
        Assert.True(CommittedTransactions >= committedBeforeSnapshot, $"the clone lost committed transactions: {CommittedTransactions} history rows, {committedBeforeSnapshot} committed before the snapshot\npgbench: {loadOutput}");
    }
}

/// <summary>
/// Starts a second PostgreSQL on a writable view of a pgbench database's snapshot (view, export,
/// nbdfuse + loop, ext4 mounted read-write), runs pg_amcheck and checks pgbench's books, then stops
/// it: the proof that a snapshot starts as a database, shared by the snapshot and agent tests.
/// </summary>
internal static class PostgresClone
{
    /// <summary>The pgbench books balance: accounts, branches, tellers and history agree ("t" when they do).</summary>
    public const string BooksBalance =
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches)" +
        " AND (SELECT sum(bbalance) FROM pgbench_branches) = (SELECT sum(tbalance) FROM pgbench_tellers)" +
        " AND (SELECT sum(tbalance) FROM pgbench_tellers) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)";

    public static async Task<PostgresCloneCheck> StartOnViewAsync(TidemarkClient client, string snapshot, string bin, TempDirectory temp)
    {
        await client.CreateViewAsync(snapshot, "pg-clone");
        var viewExport = await client.CreateExportAsync(new CreateExportRequest(Target: "pg-clone"));
        await using var view = await AttachedExport.AttachAsync(viewExport.Url!, temp.CreateDirectory("view"), readOnly: false);
        await view.MountAsync("rw");
        var cloneData = Path.Combine(view.MountPoint, "pgdata");

        // The image holds the primary's postmaster.pid, and the primary is alive in this PID
        // namespace, so PostgreSQL would refuse the directory; on another host it would be stale.
        File.Delete(Path.Combine(cloneData, "postmaster.pid"));
        await using var clone = await PostgresInstance.StartAsync(bin, cloneData, temp.Combine("sock-clone"));
        var amcheck = await clone.RunClientAsync(TimeSpan.FromMinutes(2), "pg_amcheck", "--all", "--install-missing", "--heapallindexed");
        var accounts = await clone.CountAsync("pgbench_accounts");
        var branches = await clone.CountAsync("pgbench_branches");
        var committed = await clone.CountAsync("pgbench_history");
        var balanced = await clone.QueryAsync(BooksBalance);
        var log = await File.ReadAllTextAsync(clone.LogFile);
        await clone.StopAsync();
        return new PostgresCloneCheck(amcheck, accounts, branches, committed, balanced, log);
    }
}
