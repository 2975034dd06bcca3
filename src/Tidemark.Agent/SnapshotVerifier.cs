using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;
using Npgsql;
using Tidemark.Api;
using Tidemark.Recovery;

namespace Tidemark.Agent;

/// <summary>
/// "Every snapshot mountable" (ADR 0015): attaches the NBD export of a throwaway view the server made
/// of a snapshot, mounts it read-only (the kernel replays a journal into the view, never into the
/// snapshot: <see cref="MountedSnapshot"/>), and runs the checks that fit what the host declares on
/// that volume: fsck -n of the file system (e2fsck -fn, xfs_repair -n), and for each PostgreSQL
/// cluster whose data directory is on it, a private PostgreSQL started on an overlay of the view
/// (its writes go to this host, not the view) and pg_amcheck; for each mail store on it, Dovecot
/// opens every mailbox (<see cref="MailCheck"/>). Everything is torn down before the
/// answer, also on failure; the server then deletes the view. One verification at a time per host.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class SnapshotVerifier(AgentConfig config, ILogger logger)
{
    private static readonly TimeSpan _fsckTimeout = TimeSpan.FromMinutes(30);
    private static readonly TimeSpan _postgresTimeout = TimeSpan.FromMinutes(10);
    private int _running;

    public async Task<VerifyResultDto> VerifyAsync(VerifyRequest request, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(request.Volume) || request.Volume.Length > 256 || string.IsNullOrEmpty(request.Snapshot) || request.Snapshot.Length > 512)
        {
            throw new StorageException(StorageError.InvalidArgument, "a verification names the snapshot and its volume");
        }

        // Only an NBD export reaches nbdfuse: never a local file or another scheme from the wire.
        if (request.ExportUrl is not { Length: <= 2048 } url || !(url.StartsWith("nbd://", StringComparison.Ordinal) || url.StartsWith("nbds://", StringComparison.Ordinal)))
        {
            throw new StorageException(StorageError.InvalidArgument, "a verification needs the nbd:// URL of the view's export");
        }

        var started = Stopwatch.GetTimestamp();
        var mounts = config.Mounts.Where(m => m.Volume == request.Volume).ToList();
        if (mounts.Count == 0)
        {
            return new VerifyResultDto(VerifyResultDto.NotChecked, $"nothing on host {config.HostName} is declared on volume {request.Volume}, so it knows no check for it; verify with the host that mounts it", [], 0);
        }

        if (Interlocked.Exchange(ref _running, 1) == 1)
        {
            throw new StorageException(StorageError.Busy, "another verification runs on this host; one at a time");
        }

        var checks = new List<string>();
        var log = new StringWriter(CultureInfo.InvariantCulture);
        var work = Directory.CreateTempSubdirectory("tidemark-verify-");
        try
        {
            // PostgreSQL runs as the data directory's owner and must reach its overlay under here.
            File.SetUnixFileMode(work.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
            try
            {
                MountedSnapshot.CheckHost();
            }
            catch (RecoveryException ex)
            {
                return Done(VerifyResultDto.NotChecked, $"host {config.HostName} cannot mount a view: {ex.Message}");
            }

            MountedSnapshot mounted;
            try
            {
                mounted = await MountedSnapshot.AttachAsync(url, request.Snapshot, work.FullName, log, ct);
            }
            catch (RecoveryException ex) when (ex.Failure == RecoveryFailure.Unreachable)
            {
                return Done(VerifyResultDto.NotChecked, $"the view's export did not attach: {ex.Message}");
            }
            catch (RecoveryException ex)
            {
                return Done(VerifyResultDto.Failed, $"the file system does not mount read-only: {ex.Message}");
            }

            string? failure;
            string? notChecked = null;
            await using (mounted)
            {
                checks.Add("mounted read-only");
                try
                {
                    failure = await CheckFileSystemAsync(mounted, checks, ct)
                        ?? await CheckPostgresAsync(mounted, mounts, work.FullName, checks, ct)
                        ?? await MailCheck.RunAsync(config, mounted, mounts, work.FullName, checks, ct);
                }
                catch (NotCheckedException ex)
                {
                    (failure, notChecked) = (null, ex.Message);
                }
            }

            if (notChecked is not null)
            {
                return Done(VerifyResultDto.NotChecked, notChecked, mounted.TeardownProblems);
            }

            if (mounted.TeardownProblems.Count > 0)
            {
                logger.LogWarning("Verification of {Snapshot}: teardown left {Problems}", request.Snapshot, string.Join("; ", mounted.TeardownProblems));
            }

            return Done(failure is null ? VerifyResultDto.Passed : VerifyResultDto.Failed, failure, mounted.TeardownProblems);
        }
        finally
        {
            try
            {
                work.Delete(recursive: true);
            }
            catch (IOException ex)
            {
                logger.LogWarning("Verification work directory {Directory} not removed: {Message}", work.FullName, ex.Message);
            }

            Volatile.Write(ref _running, 0);
        }

        VerifyResultDto Done(string verdict, string? reason, IReadOnlyList<string>? output = null)
        {
            logger.LogInformation("Verified {Snapshot}: {Verdict} {Reason}", request.Snapshot, verdict, reason);
            return new VerifyResultDto(verdict, reason, checks, Stopwatch.GetElapsedTime(started).TotalSeconds, output is { Count: > 0 } ? output : null);
        }
    }

    /// <summary>fsck -n on the loop device, unmounted for it (the mount before replayed the journal into the view). Returns the failure, or null.</summary>
    private static async Task<string?> CheckFileSystemAsync(MountedSnapshot mounted, List<string> checks, CancellationToken ct)
    {
        var type = FileSystemType(mounted.MountPoint);
        string[]? command = type switch
        {
            "ext2" or "ext3" or "ext4" => ["e2fsck", "-fn"],
            "xfs" => ["xfs_repair", "-n"],
            _ => null,
        };
        if (command is null)
        {
            checks.Add($"{type}: no fsck known, mounted only");
            return null;
        }

        if (HostCommand.Find(command[0]) is null)
        {
            checks.Add($"{command[0]} is not installed: mounted only");
            return null;
        }

        var result = await mounted.WhileUnmountedAsync(device => HostCommand.RunAsync(command[0], [.. command[1..], device], _fsckTimeout, ct), ct);
        var what = string.Join(' ', command);
        if (result.ExitCode != 0)
        {
            return $"{what} found problems in the {type} file system (exit {result.ExitCode}): {Tail(result.StandardOutput + "\n" + result.StandardError)}";
        }

        checks.Add($"{what}: clean");
        return null;
    }

    /// <summary>For each configured cluster whose data directory is on the volume: start it on an overlay of the view, pg_amcheck, stop. Returns the first failure, or null.</summary>
    private async Task<string?> CheckPostgresAsync(MountedSnapshot mounted, List<AgentMountEntry> mounts, string work, List<string> checks, CancellationToken ct)
    {
        string? overlay = null;
        foreach (var cluster in config.Postgres)
        {
            var (dataDirectory, version) = await DescribeAsync(cluster, ct);
            var mount = dataDirectory is null ? null : mounts
                .Where(m => dataDirectory == LocalMounts.Normalize(m.Path) || dataDirectory.StartsWith(LocalMounts.Normalize(m.Path) + "/", StringComparison.Ordinal))
                .OrderByDescending(m => m.Path.Length)
                .FirstOrDefault();
            if (mount is null)
            {
                continue;
            }

            overlay ??= await mounted.MountOverlayAsync(ct);
            var relative = Path.GetRelativePath(LocalMounts.Normalize(mount.Path), dataDirectory!);
            var data = Path.Combine(overlay, relative);
            if (WalElsewhere(data) is { } link)
            {
                // The link names the live WAL directory on this host: a PostgreSQL started on the view
                // would replay and write the production cluster's WAL. Never start it; say why.
                throw new NotCheckedException($"postgresql cluster {cluster.Name}: its WAL is not on volume {mounts[0].Volume} (pg_wal -> {link}); a view of this volume alone cannot start it: start the group's views together (data and WAL)");
            }

            var failure = await CheckClusterAsync(cluster.Name, data, version, work, ct);
            if (failure is not null)
            {
                return $"postgresql cluster {cluster.Name}: {failure}";
            }

            checks.Add($"postgresql cluster {cluster.Name}: started, pg_amcheck clean");
        }

        return null;
    }

    /// <summary>The live cluster's data directory and major version (the entry's data directory when the cluster does not answer).</summary>
    private async Task<(string? DataDirectory, int? Version)> DescribeAsync(AgentPostgresEntry cluster, CancellationToken ct)
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
            logger.LogWarning("PostgreSQL cluster {Cluster} does not answer ({Message}); verifying with its configured data directory", cluster.Name, ex.Message);
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

    /// <summary>A check that cannot be made on this view (not a finding against the snapshot).</summary>
    private sealed class NotCheckedException(string reason) : Exception(reason);

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
                return $"does not start on the view ({Tail(File.Exists(logFile) ? await File.ReadAllTextAsync(logFile, ct) : start.Describe())})";
            }

            var amcheck = await HostCommand.RunAsync("runuser", ["-u", owner, "--", Path.Combine(bin, "pg_amcheck"), "-h", sockets, "-p", port.ToString(CultureInfo.InvariantCulture), "--all", "--install-missing"], _postgresTimeout, ct);
            return amcheck.ExitCode == 0 ? null : $"pg_amcheck found problems (exit {amcheck.ExitCode}): {Tail(amcheck.StandardOutput + "\n" + amcheck.StandardError)}";
        }
        finally
        {
            await HostCommand.RunAsync("runuser", ["-u", owner, "--", Path.Combine(bin, "pg_ctl"), "stop", "-w", "-t", "60", "-m", "immediate", "-D", data], TimeSpan.FromSeconds(90), CancellationToken.None);
        }
    }

    private static string? FileSystemType(string mountPoint)
    {
        var target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(mountPoint));
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var dash = line.IndexOf(" - ", StringComparison.Ordinal);
            var fields = line.Split(' ');
            if (dash > 0 && fields.Length > 4 && MountedSnapshot.UnescapeMountField(fields[4]) == target)
            {
                return line[(dash + 3)..].Split(' ')[0];
            }
        }

        return null;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The last lines of a tool's output, enough to say why (bounded: it goes into a record and an event).</summary>
    internal static string Tail(string text)
    {
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var tail = string.Join(" | ", lines.TakeLast(6));
        return tail.Length > 1000 ? tail[^1000..] : tail;
    }
}
