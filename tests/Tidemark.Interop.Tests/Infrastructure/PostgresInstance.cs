using System.Diagnostics;
using System.Globalization;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// A PostgreSQL server from Debian's package, run as the postgres user (runuser) over a data
/// directory the test chooses, reachable only through a Unix socket in the test's own directory.
/// Stopped with pg_ctl stop -m fast; one that does not stop is killed by the PID in postmaster.pid.
/// </summary>
internal sealed class PostgresInstance : IAsyncDisposable
{
    private static readonly TimeSpan _commandTimeout = TimeSpan.FromSeconds(120);

    private readonly string _bin;
    private readonly string _socketDirectory;
    private int _postmasterPid;

    private PostgresInstance(string bin, string dataDirectory, string socketDirectory, int port)
    {
        _bin = bin;
        DataDirectory = dataDirectory;
        _socketDirectory = socketDirectory;
        Port = port;
    }

    public string DataDirectory { get; }

    public int Port { get; }

    /// <summary>Where the server's Unix socket is (its only listener).</summary>
    public string SocketDirectory => _socketDirectory;

    public string LogFile => Path.Combine(_socketDirectory, "postgres.log");

    /// <summary>initdb (with page checksums) into <paramref name="dataDirectory"/>, created and owned by postgres; the WAL in <paramref name="walDirectory"/> when given (initdb --waldir: pg_wal becomes a link to it).</summary>
    public static async Task InitDbAsync(string bin, string dataDirectory, string? walDirectory = null)
    {
        List<string> arguments = ["initdb", "--data-checksums", "--auth=trust", "--username=postgres", "--encoding=UTF8", "-D", dataDirectory];
        foreach (var directory in walDirectory is null ? [dataDirectory] : (string[])[dataDirectory, walDirectory])
        {
            Directory.CreateDirectory(directory);
            await ProcessRunner.CheckAsync(AttachedExport.Tool("chown"), "postgres:postgres", directory);
            File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        if (walDirectory is not null)
        {
            arguments.AddRange(["--waldir", walDirectory]);
        }

        await AsPostgresAsync(bin, Path.GetDirectoryName(dataDirectory)!, arguments[0], [.. arguments[1..]]);
    }

    /// <summary>Starts a server and waits until it accepts connections (after crash recovery, if the directory needs it).</summary>
    public static async Task<PostgresInstance> StartAsync(string bin, string dataDirectory, string socketDirectory)
    {
        Directory.CreateDirectory(socketDirectory);
        await ProcessRunner.CheckAsync(AttachedExport.Tool("chown"), "postgres:postgres", socketDirectory);
        var instance = new PostgresInstance(bin, dataDirectory, socketDirectory, FreePort.Find());

        // No TCP listener at all: the port only names the socket file, so nothing on the machine can
        // collide with or reach these servers. Small buffers keep two servers light on a shared host.
        var options = $"-c listen_addresses='' -k {socketDirectory} -p {instance.Port} -c shared_buffers=64MB -c max_connections=20";
        try
        {
            await instance.RunAsync("pg_ctl", "start", "-w", "-t", "90", "-D", dataDirectory, "-l", instance.LogFile, "-o", options);
            instance._postmasterPid = ReadPostmasterPid(dataDirectory);
            return instance;
        }
        catch (Exception e)
        {
            await instance.DisposeAsync();
            var log = File.Exists(instance.LogFile) ? await File.ReadAllTextAsync(instance.LogFile) : "(no log)";
            throw new InvalidOperationException($"PostgreSQL did not start on {dataDirectory}: {e.Message}\n{instance.LogFile}:\n{log}", e);
        }
    }

    public async Task<string> QueryAsync(string sql) =>
        (await RunAsync("psql", "-h", _socketDirectory, "-p", Port.ToString(CultureInfo.InvariantCulture), "-d", "postgres", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql)).StandardOutput.Trim();

    public async Task<long> CountAsync(string table) => long.Parse(await QueryAsync($"SELECT count(*) FROM {table}"), CultureInfo.InvariantCulture);

    /// <summary>Runs a PostgreSQL client tool against this server (host and port are added).</summary>
    public Task<ProcessResult> RunClientAsync(TimeSpan timeout, string tool, params string[] arguments) =>
        RunAsync(timeout, tool, ["-h", _socketDirectory, "-p", Port.ToString(CultureInfo.InvariantCulture), .. arguments]);

    /// <summary>Starts a client tool in the background (for load that runs while the test acts).</summary>
    public Process StartClient(string tool, params string[] arguments) =>
        ProcessRunner.Start(AttachedExport.Tool("runuser"), ["-u", "postgres", "--", Path.Combine(_bin, tool), "-h", _socketDirectory, "-p", Port.ToString(CultureInfo.InvariantCulture), .. arguments], redirectOutput: true, _socketDirectory);

    public Task StopAsync() => RunAsync("pg_ctl", "stop", "-w", "-t", "60", "-m", "fast", "-D", DataDirectory);

    public async ValueTask DisposeAsync()
    {
        var pid = _postmasterPid != 0 ? _postmasterPid : TryReadPostmasterPid(DataDirectory);
        if (pid == 0 || !Signals.IsAlive(pid))
        {
            return;
        }

        await ProcessRunner.TryRunAsync(AttachedExport.Tool("runuser"), "-u", "postgres", "--", Path.Combine(_bin, "pg_ctl"), "stop", "-w", "-t", "30", "-m", "fast", "-D", DataDirectory);

        // The postmaster's children exit on their own once it is gone.
        var deadline = Stopwatch.StartNew();
        if (Signals.IsAlive(pid))
        {
            Signals.TrySend(pid, Signals.SigKill);
        }

        while (Signals.IsAlive(pid) && deadline.Elapsed < TimeSpan.FromSeconds(10))
        {
            await Task.Delay(100);
        }
    }

    private Task<ProcessResult> RunAsync(string tool, params string[] arguments) => RunAsync(_commandTimeout, tool, arguments);

    private Task<ProcessResult> RunAsync(TimeSpan timeout, string tool, string[] arguments) =>
        AsPostgresAsync(_bin, _socketDirectory, timeout, tool, arguments);

    private static Task<ProcessResult> AsPostgresAsync(string bin, string workingDirectory, string tool, params string[] arguments) =>
        AsPostgresAsync(bin, workingDirectory, _commandTimeout, tool, arguments);

    // runuser, not su: no PAM prompt, no login shell. The working directory must be one postgres can enter.
    private static async Task<ProcessResult> AsPostgresAsync(string bin, string workingDirectory, TimeSpan timeout, string tool, string[] arguments) =>
        (await ProcessRunner.RunInAsync(workingDirectory, timeout, AttachedExport.Tool("runuser"), ["-u", "postgres", "--", Path.Combine(bin, tool), .. arguments])).AssertSuccess();

    private static int ReadPostmasterPid(string dataDirectory) =>
        TryReadPostmasterPid(dataDirectory) is var pid and > 0 ? pid : throw new InvalidOperationException($"no PID in {dataDirectory}/postmaster.pid");

    /// <summary>The first line of postmaster.pid is the postmaster's PID.</summary>
    private static int TryReadPostmasterPid(string dataDirectory)
    {
        try
        {
            var first = File.ReadLines(Path.Combine(dataDirectory, "postmaster.pid")).FirstOrDefault();
            return int.TryParse(first, CultureInfo.InvariantCulture, out var pid) ? pid : 0;
        }
        catch (IOException)
        {
            return 0;
        }
    }
}
