using Microsoft.Extensions.Logging;
using Npgsql;
using Tidemark.Api;

namespace Tidemark.Agent;

/// <summary>
/// PostgreSQL backup mode around the cut: for each configured cluster whose data directory sits on
/// a volume being cut, `pg_backup_start(label, fast)` on a connection held open (non-exclusive
/// backup mode ends if that session ends), then `pg_backup_stop()` on the same connection at
/// resume. The fast checkpoint makes the snapshot's recovery short; the backup label that
/// pg_backup_stop returns is handed to the server, which keeps it with the snapshot (ADR 0015).
/// Runs before the file-system freeze (its checkpoint writes) and resumes after the thaw.
/// A cluster in mode atomic-cut is not put in backup mode: the plugin checks that its data
/// directory, WAL and tablespaces all lie on volumes of this cut and lets the freeze and the atomic
/// cut make the snapshot PostgreSQL's documentation describes ("consistent snapshot": a view starts
/// by crash recovery), sparing the checkpoint per snapshot; recorded as such, not as application.
/// </summary>
public sealed class PostgresPlugin(AgentConfig config, ILogger logger) : IQuiescePlugin
{
    public string Name => "postgresql";

    /// <summary>
    /// How long a backup-mode command may run when nobody gives up first. Npgsql's own command
    /// timeout (30 s by default) is off for this plugin's commands: pg_backup_start waits for a
    /// checkpoint, which took 27-33 s under load (docs/BENCHMARKS.md, "Taking the cost apart"),
    /// while the server's quiesce call allows 60 s, and the end of that call (its request's token)
    /// cancels the command. This limit bounds a caller that never gives up, and pg_backup_stop at
    /// resume, which no caller's token covers.
    /// </summary>
    public TimeSpan BackupCommandLimit { get; init; } = TimeSpan.FromMinutes(5);

    public Task<IQuiesced?> QuiesceAsync(IReadOnlySet<string> volumes, CancellationToken ct) => QuiesceAsync(new QuiesceScope(volumes, []), ct);

    public async Task<IQuiesced?> QuiesceAsync(QuiesceScope scope, CancellationToken ct)
    {
        var effective = scope.Apply(config);
        var held = new List<(string Cluster, NpgsqlConnection Connection)>();
        var cut = new List<string>();
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
        bounded.CancelAfter(BackupCommandLimit);
        try
        {
            foreach (var cluster in effective.Postgres)
            {
                var connection = new NpgsqlConnection(cluster.ConnectionString);
                var step = "connecting";
                try
                {
                    await connection.OpenAsync(bounded.Token);
                    step = "asking for its data directory";
                    var dataDirectory = cluster.DataDirectory ?? (string)(await Scalar(connection, "SHOW data_directory", bounded.Token))!;
                    var volume = effective.VolumeOf(dataDirectory);
                    if (volume is null || !scope.Volumes.Contains(volume))
                    {
                        await connection.DisposeAsync();
                        continue;
                    }

                    if (cluster.Mode == AgentPostgresEntry.AtomicCutMode)
                    {
                        var tablespaces = (string)(await Scalar(connection, TablespacesSql, bounded.Token))!;
                        var paths = ClusterPaths(dataDirectory, tablespaces.Split('\n', StringSplitOptions.RemoveEmptyEntries));
                        await connection.DisposeAsync();
                        if (AtomicCutProblem(effective, cluster.Name, paths, scope.Volumes) is { } problem)
                        {
                            throw new StorageException(StorageError.InvalidArgument, problem);
                        }

                        cut.Add(cluster.Name);
                        continue;
                    }

                    step = "pg_backup_start (a checkpoint)";
                    await Scalar(connection, "SELECT pg_backup_start(@label, true)::text", bounded.Token, ("label", $"tidemark {effective.HostName} {DateTimeOffset.UtcNow:O}"));
                    held.Add((cluster.Name, connection));
                }
                catch (Exception ex) when (ex is OperationCanceledException or NpgsqlException && bounded.IsCancellationRequested)
                {
                    // Cancelled by the deadline, not broken: say which deadline, not "reading from stream".
                    await connection.DisposeAsync();
                    throw new StorageException(StorageError.Unavailable, Unfinished(cluster.Name, step, ct.IsCancellationRequested, BackupCommandLimit), ex);
                }
                catch (NpgsqlException ex)
                {
                    await connection.DisposeAsync();
                    throw new StorageException(StorageError.Unavailable, $"postgresql cluster {cluster.Name}: cannot enter backup mode ({ex.Message}); check the connection string in the agent's config and that its role may run pg_backup_start", ex);
                }
            }
        }
        catch
        {
            await new BackupMode(held, BackupCommandLimit, logger).ResumeAsync();
            throw;
        }

        return Quiesced(held, cut, BackupCommandLimit, logger);
    }

    /// <summary>
    /// Why a cluster was not quiesced when a deadline cancelled <paramref name="step"/>: the server's
    /// (<paramref name="callEnded"/>: its quiesce call's deadline passed, or it went away) or the
    /// agent's own <paramref name="limit"/>.
    /// </summary>
    public static string Unfinished(string cluster, string step, bool callEnded, TimeSpan limit)
    {
        var deadline = callEnded
            ? "before the server stopped waiting for this quiesce (the deadline of its call)"
            : $"within the agent's limit of {limit.TotalSeconds:0.#} s for a backup-mode command";
        var checkpoint = step.StartsWith("pg_backup_start", StringComparison.Ordinal)
            ? "; a checkpoint under load can take that long: spread checkpoints (a shorter checkpoint_timeout leaves less to write at once), or set the cluster's mode to atomic-cut, which needs no checkpoint per snapshot"
            : string.Empty;
        return $"postgresql cluster {cluster}: {step} did not finish {deadline}; nothing stays in backup mode{checkpoint}";
    }

    /// <summary>
    /// What a cut holds: the clusters <paramref name="held"/> in backup mode (on their open
    /// connections) and those <paramref name="cut"/> atomically; null when neither.
    /// </summary>
    public static IQuiesced? Quiesced(List<(string Cluster, NpgsqlConnection Connection)> held, List<string> cut, TimeSpan stopLimit, ILogger logger) =>
        (held.Count, cut.Count) switch
        {
            (0, 0) => null,
            (_, 0) => new BackupMode(held, stopLimit, logger),
            (0, _) => new AtomicCut(cut),
            _ => new Both(new BackupMode(held, stopLimit, logger), new AtomicCut(cut)),
        };

    // One line per tablespace outside the data directory (pg_default and pg_global live inside it).
    private const string TablespacesSql = "SELECT coalesce(string_agg(pg_tablespace_location(oid), E'\\n'), '') FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')";

    /// <summary>
    /// What of a cluster must be in one atomic cut: the data directory, where its pg_wal leads (a
    /// link, initdb --waldir), and each tablespace's location (final link targets, as the kernel
    /// writes them).
    /// </summary>
    public static IReadOnlyList<(string What, string Path)> ClusterPaths(string dataDirectory, IEnumerable<string> tablespaces)
    {
        var paths = new List<(string What, string Path)> { ("data directory", LocalMounts.Normalize(dataDirectory)) };
        var wal = Path.Combine(dataDirectory, "pg_wal");
        if (Directory.ResolveLinkTarget(wal, returnFinalTarget: true) is { } walTarget)
        {
            paths.Add(("WAL", LocalMounts.Normalize(walTarget.FullName)));
        }

        foreach (var location in tablespaces)
        {
            var target = Directory.Exists(location) ? Directory.ResolveLinkTarget(location, returnFinalTarget: true)?.FullName ?? location : location;
            paths.Add(($"tablespace at {location}", LocalMounts.Normalize(target)));
        }

        return paths;
    }

    /// <summary>
    /// Why a cut of <paramref name="volumes"/> is not an atomic snapshot of the whole cluster, or null
    /// when it is: every path must lie under a declared mount of a volume being cut.
    /// </summary>
    public static string? AtomicCutProblem(AgentConfig config, string cluster, IReadOnlyList<(string What, string Path)> paths, IReadOnlySet<string> volumes)
    {
        var outside = paths
            .Select(p => (p.What, p.Path, Volume: config.VolumeOf(p.Path)))
            .Where(p => p.Volume is null || !volumes.Contains(p.Volume))
            .Select(p => p.Volume is null ? $"its {p.What} ({p.Path}) is on no declared mount" : $"its {p.What} ({p.Path}) is on volume {p.Volume}, not in this cut")
            .ToList();
        return outside.Count == 0
            ? null
            : $"postgresql cluster {cluster} (mode atomic-cut): {string.Join("; ", outside)}; without backup mode every directory of the cluster must be in one atomic cut: snapshot its volumes as one group, declare their mounts ('tidemark agent pair --mount PATH=VOLUME'), or set its mode to backup";
    }

    /// <summary>
    /// A command of this plugin: without Npgsql's own timeout (CommandTimeout 0), bounded by the
    /// token it runs with instead (see <see cref="BackupCommandLimit"/>).
    /// </summary>
    public static NpgsqlCommand Command(string sql, NpgsqlConnection? connection) => new(sql, connection) { CommandTimeout = 0 };

    private static async Task<object?> Scalar(NpgsqlConnection connection, string sql, CancellationToken ct, params (string Name, object Value)[] parameters)
    {
        await using var command = Command(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return await command.ExecuteScalarAsync(ct);
    }

    /// <summary>
    /// Clusters left out of backup mode: the freeze that follows (file-system plugin) and the atomic
    /// cut make the snapshot; nothing to undo at resume. The level stays "filesystem": PostgreSQL
    /// was not told, and a view starts by crash recovery from its last checkpoint.
    /// </summary>
    private sealed class AtomicCut(List<string> clusters) : IQuiesced
    {
        public string Consistency => ConsistencyLevel.FileSystem;

        public IReadOnlyList<string> Items { get; } = [.. clusters.Select(c => $"postgresql: cluster {c} (atomic cut, no backup mode)")];

        public Task ResumeAsync() => Task.CompletedTask;
    }

    /// <summary>
    /// Some clusters in backup mode, others cut atomically: the snapshot is only as consistent as its
    /// weakest part, so the level is the atomic cut's ("filesystem"); the items still name every
    /// cluster and the backup-mode clusters' labels are still kept.
    /// </summary>
    private sealed class Both(BackupMode backup, AtomicCut cut) : IQuiesced
    {
        public string Consistency => ConsistencyLevel.Weakest([backup.Consistency, cut.Consistency]);

        public IReadOnlyList<string> Items { get; } = [.. backup.Items, .. cut.Items];

        public IReadOnlyDictionary<string, string> BackupLabels => backup.BackupLabels;

        public Task ResumeAsync() => backup.ResumeAsync();
    }

    private sealed class BackupMode(List<(string Cluster, NpgsqlConnection Connection)> held, TimeSpan stopLimit, ILogger logger) : IQuiesced
    {
        private readonly Dictionary<string, string> _labels = new(StringComparer.Ordinal);
        private int _resumed;

        public string Consistency => ConsistencyLevel.Application;

        public IReadOnlyList<string> Items { get; } = [.. held.Select(h => $"postgresql: cluster {h.Cluster}")];

        public IReadOnlyDictionary<string, string> BackupLabels => _labels;

        public async Task ResumeAsync()
        {
            if (Interlocked.Exchange(ref _resumed, 1) != 0)
            {
                return;
            }

            List<string>? failures = null;
            using var bounded = new CancellationTokenSource(stopLimit);
            for (var i = held.Count - 1; i >= 0; i--)
            {
                var (cluster, connection) = held[i];
                try
                {
                    // wait_for_archive false: the snapshot holds the WAL it needs; archiving is not ours to wait for.
                    _labels[cluster] = (string)(await Scalar(connection, "SELECT labelfile FROM pg_backup_stop(false)", bounded.Token))!;
                }
                catch (Exception ex) when (ex is OperationCanceledException or NpgsqlException && bounded.IsCancellationRequested)
                {
                    var message = $"it did not finish within the agent's limit of {stopLimit.TotalSeconds:0.#} s";
                    AgentLog.BackupStopFailed(logger, cluster, message);
                    (failures ??= []).Add($"{cluster}: {message}");
                }
                catch (NpgsqlException ex)
                {
                    // Closing the session below ends backup mode anyway (non-exclusive); the label is lost.
                    AgentLog.BackupStopFailed(logger, cluster, ex.Message);
                    (failures ??= []).Add($"{cluster}: {ex.Message}");
                }
                finally
                {
                    await connection.DisposeAsync();
                }
            }

            if (failures is not null)
            {
                throw new StorageException(StorageError.IoError, "pg_backup_stop failed: " + string.Join("; ", failures));
            }
        }
    }
}
