using Microsoft.Extensions.Logging;
using Npgsql;

namespace Tidemark.Agent;

/// <summary>
/// PostgreSQL backup mode around the cut: for each configured cluster whose data directory sits on
/// a volume being cut, `pg_backup_start(label, fast)` on a connection held open (non-exclusive
/// backup mode ends if that session ends), then `pg_backup_stop()` on the same connection at
/// resume. The fast checkpoint makes the snapshot's recovery short; the backup label that
/// pg_backup_stop returns is handed to the server, which keeps it with the snapshot (ADR 0015).
/// Runs before the file-system freeze (its checkpoint writes) and resumes after the thaw.
/// </summary>
public sealed class PostgresPlugin(AgentConfig config, ILogger logger) : IQuiescePlugin
{
    public string Name => "postgresql";

    public async Task<IQuiesced?> QuiesceAsync(IReadOnlySet<string> volumes, CancellationToken ct)
    {
        var held = new List<(string Cluster, NpgsqlConnection Connection)>();
        try
        {
            foreach (var cluster in config.Postgres)
            {
                var connection = new NpgsqlConnection(cluster.ConnectionString);
                try
                {
                    await connection.OpenAsync(ct);
                    var dataDirectory = cluster.DataDirectory ?? (string)(await Scalar(connection, "SHOW data_directory", ct))!;
                    var volume = config.VolumeOf(dataDirectory);
                    if (volume is null || !volumes.Contains(volume))
                    {
                        await connection.DisposeAsync();
                        continue;
                    }

                    await Scalar(connection, "SELECT pg_backup_start(@label, true)::text", ct, ("label", $"tidemark {config.HostName} {DateTimeOffset.UtcNow:O}"));
                    held.Add((cluster.Name, connection));
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
            await new BackupMode(held, logger).ResumeAsync();
            throw;
        }

        return held.Count == 0 ? null : new BackupMode(held, logger);
    }

    private static async Task<object?> Scalar(NpgsqlConnection connection, string sql, CancellationToken ct, params (string Name, object Value)[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return await command.ExecuteScalarAsync(ct);
    }

    private sealed class BackupMode(List<(string Cluster, NpgsqlConnection Connection)> held, ILogger logger) : IQuiesced
    {
        private readonly Dictionary<string, string> _labels = new(StringComparer.Ordinal);
        private int _resumed;

        public string Consistency => "application";

        public IReadOnlyList<string> Items { get; } = [.. held.Select(h => $"postgresql: cluster {h.Cluster}")];

        public IReadOnlyDictionary<string, string> BackupLabels => _labels;

        public async Task ResumeAsync()
        {
            if (Interlocked.Exchange(ref _resumed, 1) != 0)
            {
                return;
            }

            List<string>? failures = null;
            for (var i = held.Count - 1; i >= 0; i--)
            {
                var (cluster, connection) = held[i];
                try
                {
                    // wait_for_archive false: the snapshot holds the WAL it needs; archiving is not ours to wait for.
                    _labels[cluster] = (string)(await Scalar(connection, "SELECT labelfile FROM pg_backup_stop(false)", CancellationToken.None))!;
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
