using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace Tidemark.TestKit;

/// <summary>
/// A throw-away one-node Ceph cluster for the RADOS store tests (ADR 0017): one ceph-mon and one
/// ceph-osd with BlueStore on a sparse file (optionally a ceph-mgr), from Debian's packages, no
/// systemd, every file in a private directory, the monitor on a free loopback port. Started in a few
/// seconds; if it cannot start, the constructor throws with the daemons' log tails (no silent skip).
/// Dispose kills the daemons it started (by their process objects) and removes the directory.
/// </summary>
public class CephCluster : IDisposable
{
    public const string PoolName = "tidemark";

    private static readonly TimeSpan Step = TimeSpan.FromSeconds(60);
    private readonly List<(string Name, Process Process)> _daemons = [];
    private readonly bool _withManager;
    private bool _disposed;

    /// <summary>With a manager: it is what reports pool space (ceph df) and what rbd needs.</summary>
    public CephCluster()
        : this(withManager: true)
    {
    }

    protected CephCluster(bool withManager)
    {
        _withManager = withManager;
        Directory = Path.Combine(Path.GetTempPath(), "tidemark-ceph-" + Guid.NewGuid().ToString("N")[..10]);
        System.IO.Directory.CreateDirectory(Directory);
        try
        {
            var watch = Stopwatch.StartNew();
            Bootstrap();
            StartupTime = watch.Elapsed;
        }
        catch (Exception ex)
        {
            var logs = LogTails();
            Dispose();
            throw new InvalidOperationException(
                $"the one-node Ceph cluster did not start ({ex.Message}). It needs Debian's ceph-mon, ceph-osd and ceph-common (scripts/install-deps installs them).\n{logs}", ex);
        }
    }

    public string Directory { get; }

    public string ConfPath => Path.Combine(Directory, "ceph.conf");

    public int MonitorPort { get; private set; }

    public TimeSpan StartupTime { get; }

    /// <summary>A store location in the test pool with a prefix of its own, so tests never see each other's objects.</summary>
    public string Location(string? prefix = null, int timeoutSeconds = 30) =>
        $"rados:{PoolName}/{prefix ?? "t" + Guid.NewGuid().ToString("N")[..12]}?conf={ConfPath}&id=admin&timeout={timeoutSeconds.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Runs the ceph CLI against this cluster.</summary>
    public ProcessResult Ceph(params string[] arguments) =>
        Run("ceph", ["-c", ConfPath, "--connect-timeout", "10", .. arguments]);

    /// <summary>Runs the rados CLI against this cluster.</summary>
    public ProcessResult Rados(params string[] arguments) => Run("rados", ["-c", ConfPath, .. arguments]);

    /// <summary>Kills the OSD (SIGKILL, as a crash would); I/O to the pool stalls until <see cref="StartOsd"/>.</summary>
    public void KillOsd() => Kill("osd.0");

    /// <summary>False between <see cref="KillOsd"/> and <see cref="StartOsd"/>.</summary>
    public bool IsOsdRunning => _daemons.Exists(d => d.Name == "osd.0");

    /// <summary>Starts the OSD again (after <see cref="KillOsd"/>) and waits until the pool takes writes.</summary>
    public void StartOsd()
    {
        Launch("osd.0", "ceph-osd", "-i", "0");
        WaitFor("the OSD up", () => OsdsUp() == 1);
        WaitFor($"pool {PoolName} writable", () => Rados("-p", PoolName, "put", "__probe", ConfPath).ExitCode == 0);
    }

    /// <summary>
    /// Kills the one monitor (SIGKILL, by the process this cluster started). The OSD keeps running;
    /// clients lose the maps, their tickets' renewal and every monitor command until <see cref="StartMonitor"/>.
    /// </summary>
    public void KillMonitor() => Kill("mon.a");

    /// <summary>False between <see cref="KillMonitor"/> and <see cref="StartMonitor"/>.</summary>
    public bool IsMonitorRunning => _daemons.Exists(d => d.Name == "mon.a");

    /// <summary>Starts the monitor again on its data and port (after <see cref="KillMonitor"/>) and waits until it answers and the OSD is up in its map.</summary>
    public void StartMonitor()
    {
        Launch("mon.a", "ceph-mon", "-i", "a");
        WaitFor("the monitor", () => Ceph("mon", "stat").ExitCode == 0);
        WaitFor("the OSD up", () => OsdsUp() == 1);
    }

    private void Kill(string name)
    {
        var index = _daemons.FindIndex(d => d.Name == name);
        if (index >= 0)
        {
            _daemons[index].Process.Kill();
            _daemons[index].Process.WaitForExit();
            _daemons[index].Process.Dispose();
            _daemons.RemoveAt(index);
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        GC.SuppressFinalize(this);

        // OSD and manager first, monitor last; SIGKILL since the data is thrown away.
        for (var i = _daemons.Count - 1; i >= 0; i--)
        {
            var process = _daemons[i].Process;
            try
            {
                if (!process.HasExited)
                {
                    process.Kill();
                    process.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException)
            {
            }

            process.Dispose();
        }

        _daemons.Clear();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void Bootstrap()
    {
        foreach (var sub in new[] { "run", "log", "crash", "mon", "mgr/ceph-x", "osd/0" })
        {
            System.IO.Directory.CreateDirectory(Path.Combine(Directory, sub));
        }

        MonitorPort = FreePortPair();
        var fsid = Guid.NewGuid().ToString();
        var monHost = $"[v2:127.0.0.1:{MonitorPort},v1:127.0.0.1:{MonitorPort + 1}]";
        File.WriteAllText(ConfPath, Config(fsid, monHost) + "\n"); // the parser wants the last line ended

        // Every key is made up front and imported into the monitor's keyring before its mkfs, so no
        // 'ceph auth add' round trip is needed for the OSD or manager.
        var monKeyring = Path.Combine(Directory, "mon.keyring");
        var adminKeyring = Path.Combine(Directory, "keyring");
        var mgrKeyring = Path.Combine(Directory, "mgr/ceph-x/keyring");
        var osdKeyring = Path.Combine(Directory, "osd/0/keyring");
        Check("ceph-authtool", "--create-keyring", monKeyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *");
        Check("ceph-authtool", "--create-keyring", adminKeyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *", "--cap", "mgr", "allow *");
        Check("ceph-authtool", "--create-keyring", mgrKeyring, "--gen-key", "-n", "mgr.x", "--cap", "mon", "allow profile mgr", "--cap", "osd", "allow *");
        Check("ceph-authtool", "--create-keyring", osdKeyring, "--gen-key", "-n", "osd.0", "--cap", "mon", "allow profile osd", "--cap", "mgr", "allow profile osd", "--cap", "osd", "allow *");
        foreach (var keyring in new[] { adminKeyring, mgrKeyring, osdKeyring })
        {
            Check("ceph-authtool", monKeyring, "--import-keyring", keyring);
        }

        var monmap = Path.Combine(Directory, "monmap");
        Check("monmaptool", "--create", "--fsid", fsid, "--enable-all-features", "--set-min-mon-release", "pacific", "--addv", "a", monHost, monmap);
        Check("ceph-mon", "-c", ConfPath, "--mkfs", "-i", "a", "--monmap", monmap, "--keyring", monKeyring);
        Launch("mon.a", "ceph-mon", "-i", "a");
        WaitFor("the monitor", () => Ceph("mon", "stat").ExitCode == 0);
        if (_withManager)
        {
            Launch("mgr.x", "ceph-mgr", "-i", "x");
        }

        var uuid = Guid.NewGuid().ToString();
        var id = Ceph("osd", "new", uuid, "0").AssertSuccess().StandardOutput.Trim();
        if (id != "0")
        {
            throw new InvalidOperationException($"the monitor gave the OSD id {id}, not 0");
        }

        Check("ceph-osd", "-c", ConfPath, "-i", "0", "--mkfs", "--osd-uuid", uuid);
        Launch("osd.0", "ceph-osd", "-i", "0");
        WaitFor("the OSD up", () => OsdsUp() == 1);
        Ceph("osd", "pool", "create", PoolName, "8", "8").AssertSuccess();
        Ceph("osd", "pool", "application", "enable", PoolName, "rbd");

        // A write returns only once the pool's PGs are active: the true sign the cluster is ready.
        WaitFor($"pool {PoolName} writable", () => Rados("-p", PoolName, "put", "__probe", ConfPath).ExitCode == 0);
        Rados("-p", PoolName, "rm", "__probe");
        if (_withManager)
        {
            // Pool space reaches 'ceph df' only through the manager's first stats report.
            // The manager loads its Python modules first: CPU-bound, a minute or more on a loaded machine.
            WaitFor("the manager's first space report", PoolSpaceReported, 3 * Step);
        }
    }

    private bool PoolSpaceReported()
    {
        var result = Ceph("df", "-f", "json");
        if (result.ExitCode != 0)
        {
            return false;
        }

        using var doc = JsonDocument.Parse(result.StandardOutput);
        return doc.RootElement.GetProperty("pools").EnumerateArray()
            .Any(p => p.GetProperty("name").GetString() == PoolName && p.GetProperty("stats").GetProperty("max_avail").GetInt64() > 0);
    }

    private string Config(string fsid, string monHost) => $"""
        [global]
        fsid = {fsid}
        mon_host = {monHost}
        public_addr = 127.0.0.1
        cluster_addr = 127.0.0.1
        public_network = 127.0.0.0/8
        ms_bind_ipv4 = true
        ms_bind_ipv6 = false
        run_dir = {Directory}/run
        log_file = {Directory}/log/$name.log
        crash_dir = {Directory}/crash
        log_to_stderr = false
        err_to_stderr = true
        osd_pool_default_size = 1
        osd_pool_default_min_size = 1
        mon_allow_pool_size_one = true
        osd_pool_default_pg_num = 8
        osd_pool_default_pgp_num = 8
        osd_pool_default_pg_autoscale_mode = off
        osd_crush_chooseleaf_type = 0
        mon_warn_on_pool_no_redundancy = false
        mon_warn_on_insecure_global_id_reclaim_allowed = false
        mon_data_avail_warn = 1
        mon_data_avail_crit = 0
        # map commits every 50 ms instead of 1 s: the boot of the OSD and the pool show up sooner
        paxos_propose_interval = 0.05
        # the manager reports space every second instead of 5 s, so ceph df has figures sooner
        mgr_stats_period = 1

        [client]
        # clients (fio, rbd, the store under test, several per process) have no admin socket: theirs would collide
        admin_socket =
        # in [client], not [global]: there it would override the $data/keyring of each daemon
        keyring = {Directory}/keyring

        [mon]
        admin_socket = {Directory}/run/$name.asok
        mon_data = {Directory}/mon/$cluster-$id
        mon_allow_pool_delete = true
        mon_osd_reporter_subtree_level = osd

        [mgr]
        admin_socket = {Directory}/run/$name.asok
        mgr_data = {Directory}/mgr/$cluster-$id

        [osd]
        admin_socket = {Directory}/run/$name.asok
        osd_data = {Directory}/osd/$id
        osd_objectstore = bluestore
        # bluestore_block_path stays unset: it names the target of osd_data/block, and pointing it
        # there makes mkfs create a link to itself. Unset, mkfs makes a sparse file of this size.
        bluestore_block_create = true
        bluestore_block_size = {10L << 30}
        bluestore_fsck_on_mount = false
        bluestore_fsck_on_mkfs = false
        # every bdev close waits for the poll of the aio reaper (250 ms default), mkfs and boot close ~15 times
        bdev_aio_poll_ms = 10
        # the minimum of Ceph 16, anything smaller is ignored and the OSD aims for 4 GiB
        osd_memory_target = 939524096
        """;

    private int OsdsUp()
    {
        var result = Ceph("osd", "stat", "-f", "json");
        if (result.ExitCode != 0)
        {
            return -1;
        }

        using var doc = JsonDocument.Parse(result.StandardOutput);
        return doc.RootElement.GetProperty("num_up_osds").GetInt32();
    }

    private void Launch(string name, string program, params string[] arguments)
    {
        var log = Path.Combine(Directory, "log", name + ".stdout");
        var process = ProcessRunner.Start(program, ["-c", ConfPath, .. arguments, "-f"], redirectOutput: true);

        // Drain the daemon's output into a file, so a full pipe never blocks it.
        _ = Task.Run(async () =>
        {
            try
            {
                await using var file = File.AppendText(log);
                var err = process.StandardError.ReadToEndAsync();
                await file.WriteAsync(await process.StandardOutput.ReadToEndAsync());
                await file.WriteAsync(await err);
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException)
            {
            }
        });
        _daemons.Add((name, process));
    }

    private void WaitFor(string what, Func<bool> ready, TimeSpan? limit = null)
    {
        var within = limit ?? Step;
        var deadline = Stopwatch.StartNew();
        while (!ready())
        {
            foreach (var (name, process) in _daemons)
            {
                if (process.HasExited)
                {
                    throw new InvalidOperationException($"{name} exited with {process.ExitCode} while waiting for {what}");
                }
            }

            if (deadline.Elapsed > within)
            {
                throw new TimeoutException($"waited {within.TotalSeconds} s for {what}");
            }

            Thread.Sleep(250);
        }
    }

    private ProcessResult Check(string program, params string[] arguments) => Run(program, arguments).AssertSuccess();

    private static ProcessResult Run(string program, string[] arguments) =>
        ProcessRunner.RunAsync(Step, program, arguments).GetAwaiter().GetResult();

    private string LogTails()
    {
        var logs = Path.Combine(Directory, "log");
        if (!System.IO.Directory.Exists(logs))
        {
            return "";
        }

        return string.Join('\n', System.IO.Directory.GetFiles(logs).Select(f =>
        {
            var lines = File.ReadAllLines(f);
            return $"--- {Path.GetFileName(f)}\n{string.Join('\n', lines.Skip(Math.Max(0, lines.Length - 15)))}";
        }));
    }

    // The monitor listens on P (msgr2) and P+1 (msgr1); both must be free. Another cluster on a
    // busy port would answer our ceph commands instead of ours.
    private static int FreePortPair()
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            using var first = new TcpListener(IPAddress.Loopback, 0);
            first.Start();
            var port = ((IPEndPoint)first.LocalEndpoint).Port;
            if (port >= 65535)
            {
                continue;
            }

            try
            {
                using var second = new TcpListener(IPAddress.Loopback, port + 1);
                second.Start();
                return port;
            }
            catch (SocketException)
            {
            }
        }

        throw new InvalidOperationException("found no two adjacent free loopback ports for the Ceph monitor");
    }
}

/// <summary>
/// The one-node cluster without a manager: the manager only reports pool space (and serves rbd),
/// and it is the largest and slowest daemon to start; tests that give capacities do without it.
/// </summary>
public class CephClusterWithoutManager : CephCluster
{
    public CephClusterWithoutManager()
        : base(withManager: false)
    {
    }
}
