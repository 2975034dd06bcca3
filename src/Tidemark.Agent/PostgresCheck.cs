using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;
using Npgsql;
using Tidemark.Recovery;

namespace Tidemark.Agent;

/// <summary>One attached view of a verification: the volume it stands for, its mount, and what the host declares on that volume.</summary>
[SupportedOSPlatform("linux")]
internal sealed record VerifiedView(string Volume, MountedSnapshot Mounted, List<AgentMountEntry> Mounts);

/// <summary>A check that cannot be made on these views (not a finding against the snapshot).</summary>
internal sealed class NotCheckedException(string reason) : Exception(reason);

/// <summary>
/// The PostgreSQL part of a verification (ADR 0015): for each configured cluster whose data directory
/// lies on one of the views, a private PostgreSQL started on an overlay of that view (its writes go to
/// this host, not the view), then pg_amcheck. A cluster whose pg_wal links out of its data directory
/// (initdb --waldir) starts only when the link's target is on a view of the same cut (a group's WAL
/// member): the data overlay's pg_wal is relinked into that view's overlay. A target on no view names
/// the live WAL directory, so the cluster is never started (not-checked, with the reason).
/// </summary>
[SupportedOSPlatform("linux")]
internal static class PostgresCheck
{
    private static readonly TimeSpan _postgresTimeout = TimeSpan.FromMinutes(10);

    /// <summary>Checks each configured cluster on the views; returns the first failure, or null.</summary>
    public static async Task<string?> RunAsync(AgentConfig config, IReadOnlyList<VerifiedView> views, string work, List<string> checks, ILogger logger, CancellationToken ct)
    {
        foreach (var cluster in config.Postgres)
        {
            var (dataDirectory, version) = await DescribeAsync(cluster, logger, ct);
            if (dataDirectory is null || Locate(views, dataDirectory) is not { } located)
            {
                continue;
            }

            var (dataView, dataMount) = located;

            var data = Path.Combine(await OverlayOf(dataView, ct), Path.GetRelativePath(LocalMounts.Normalize(dataMount.Path), dataDirectory));
            var what = $"postgresql cluster {cluster.Name}";
            if (WalElsewhere(data) is { } link)
            {
                // Resolved against the live data directory: that is where the link was made and what it names.
                var target = Path.GetFullPath(link, dataDirectory);
                if (Locate(views, target) is not { } walLocated)
                {
                    // The link names the live WAL directory on this host: a PostgreSQL started on the view
                    // would replay and write the production cluster's WAL. Never start it; say why.
                    var others = views.Count > 1 ? " nor on another volume of this cut" : "";
                    throw new NotCheckedException($"{what}: its WAL is not on volume {dataView.Volume}{others} (pg_wal -> {link}); a view of this volume alone cannot start it: start the group's views together (data and WAL), e.g. 'tidemark group verify GROUP SNAPSHOT --host HOST'");
                }

                var (walView, walMount) = walLocated;
                var wal = Path.Combine(await OverlayOf(walView, ct), Path.GetRelativePath(LocalMounts.Normalize(walMount.Path), target));
                if (!Directory.Exists(wal))
                {
                    return $"{what}: its WAL directory {target} is missing in the view of {walView.Volume}";
                }

                // The overlay is this host's writable layer over the data view: the link changes nothing in the view.
                File.Delete(Path.Combine(data, "pg_wal"));
                Directory.CreateSymbolicLink(Path.Combine(data, "pg_wal"), wal);
                what += $" (data on {dataView.Volume}, WAL on {walView.Volume})";
                checks.Add($"postgresql cluster {cluster.Name}: pg_wal -> the view of {walView.Volume}");
            }

            var failure = await CheckClusterAsync(cluster.Name, data, version, work, ct);
            if (failure is not null)
            {
                return $"{what}: {failure}";
            }

            checks.Add($"{what}: started, pg_amcheck clean");
        }

        return null;
    }

    /// <summary>The view and declared mount (the deepest) that <paramref name="path"/> lies under, if any.</summary>
    private static (VerifiedView View, AgentMountEntry Mount)? Locate(IReadOnlyList<VerifiedView> views, string path) =>
        views.SelectMany(v => v.Mounts.Select(m => (View: v, Mount: m)))
            .Where(c => path == LocalMounts.Normalize(c.Mount.Path) || path.StartsWith(LocalMounts.Normalize(c.Mount.Path) + "/", StringComparison.Ordinal))
            .OrderByDescending(c => c.Mount.Path.Length)
            .Select(c => ((VerifiedView, AgentMountEntry)?)(c.View, c.Mount))
            .FirstOrDefault();

    private static async Task<string> OverlayOf(VerifiedView view, CancellationToken ct) => view.Mounted.OverlayPoint ?? await view.Mounted.MountOverlayAsync(ct);

    /// <summary>The live cluster's data directory and major version (the entry's data directory when the cluster does not answer).</summary>
    private static async Task<(string? DataDirectory, int? Version)> DescribeAsync(AgentPostgresEntry cluster, ILogger logger, CancellationToken ct)
    {
        try
        {
            await using var connection = new NpgsqlConnection(cluster.ConnectionString);
            await connection.OpenAsync(ct);
            await using var command = new NpgsqlCommand("SELECT current_setting('data_directory'), current_setting('server_version_num')::int / 10000", connection);
            await using var reader = await command.ExecuteReaderAsync(ct);
            await reader.ReadAsync(ct);
            return (cluster.DataDirectory ?? reader.GetString(0), reader.GetInt32(1));
        }
        catch (NpgsqlException ex)
        {
            AgentLog.ClusterNotAnswering(logger, cluster.Name, ex.Message);
            return (cluster.DataDirectory, null);
        }
    }

    /// <summary>pg_wal's link target when it is a link that leads out of the data directory (initdb --waldir), else null.</summary>
    private static string? WalElsewhere(string data)
    {
        var link = new DirectoryInfo(Path.Combine(data, "pg_wal")).LinkTarget;
        if (link is null)
        {
            return null;
        }

        var target = Path.GetFullPath(link, data);
        return target.StartsWith(Path.TrimEndingDirectorySeparator(data) + "/", StringComparison.Ordinal) ? null : link;
    }

    private static async Task<string?> CheckClusterAsync(string name, string data, int? version, string work, CancellationToken ct)
    {
        if (!File.Exists(Path.Combine(data, "PG_VERSION")))
        {
            return $"{data} in the view holds no PostgreSQL data directory (no PG_VERSION)";
        }

        version ??= int.Parse((await File.ReadAllTextAsync(Path.Combine(data, "PG_VERSION"), ct)).Trim(), CultureInfo.InvariantCulture);
        var bin = $"/usr/lib/postgresql/{version}/bin";
        if (!File.Exists(Path.Combine(bin, "pg_ctl")))
        {
            return $"PostgreSQL {version}'s programs are not installed here ({bin}); install postgresql-{version}";
        }

        var owner = (await HostCommand.RunAsync("stat", ["-c", "%U", data], TimeSpan.FromSeconds(30), ct)).StandardOutput.Trim();
        var sockets = Directory.CreateDirectory(Path.Combine(work, $"pg-{name}")).FullName;
        await HostCommand.RunAsync("chown", [owner, sockets], TimeSpan.FromSeconds(30), ct);

        // The image holds the live postmaster's pid file (alive on this host): the copy would refuse to start.
        File.Delete(Path.Combine(data, "postmaster.pid"));

        // Only this host's owner reaches it: no TCP, a private socket directory, trust for local connections only.
        var hba = Path.Combine(sockets, "pg_hba.conf");
        await File.WriteAllTextAsync(hba, "local all all trust\n", ct);
        var port = FreePort();
        var options = $"-c port={port} -c listen_addresses='' -c unix_socket_directories='{sockets}' -c hba_file='{hba}' -c archive_mode=off -c max_connections=20";
        if (!File.Exists(Path.Combine(data, "postgresql.conf")))
        {
            // A Debian cluster keeps its configuration in /etc/postgresql: the copy runs on defaults.
            await File.WriteAllTextAsync(Path.Combine(data, "postgresql.conf"), "", ct);
        }

        var logFile = Path.Combine(sockets, "postgres.log");
        var start = await HostCommand.RunAsync("runuser", ["-u", owner, "--", Path.Combine(bin, "pg_ctl"), "start", "-w", "-t", "300", "-D", data, "-l", logFile, "-o", options], _postgresTimeout, ct);
        try
        {
            if (start.ExitCode != 0)
            {
                return $"does not start on the view ({SnapshotVerifier.Tail(File.Exists(logFile) ? await File.ReadAllTextAsync(logFile, ct) : start.Describe())})";
            }

            var amcheck = await HostCommand.RunAsync("runuser", ["-u", owner, "--", Path.Combine(bin, "pg_amcheck"), "-h", sockets, "-p", port.ToString(CultureInfo.InvariantCulture), "--all", "--install-missing"], _postgresTimeout, ct);
            return amcheck.ExitCode == 0 ? null : $"pg_amcheck found problems (exit {amcheck.ExitCode}): {SnapshotVerifier.Tail(amcheck.StandardOutput + "\n" + amcheck.StandardError)}";
        }
        finally
        {
            await HostCommand.RunAsync("runuser", ["-u", owner, "--", Path.Combine(bin, "pg_ctl"), "stop", "-w", "-t", "60", "-m", "immediate", "-D", data], TimeSpan.FromSeconds(90), CancellationToken.None);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
