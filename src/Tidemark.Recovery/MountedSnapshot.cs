using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Tidemark.Api;

namespace Tidemark.Recovery;

/// <summary>
/// A snapshot's file system mounted read-only on this recovery host (docs/adr/0012): a view of the
/// snapshot, an NBD export of the view, nbdfuse presenting the export as a file, a read-write loop
/// device on that file (so the kernel can replay a dirty journal, into the view and never into the
/// snapshot), and a read-only mount. Disposing takes everything down in reverse, also after a
/// failure half-way, and reports steps it could not undo with the command that finishes them.
/// </summary>
public sealed class MountedSnapshot : IAsyncDisposable
{
    private static readonly TimeSpan _attachTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan _commandTimeout = TimeSpan.FromSeconds(120);

    /// <summary>How long a view delete refused as busy is retried after nbdfuse exited (the server notices the close).</summary>
    private static readonly TimeSpan _sessionEndWait = TimeSpan.FromSeconds(10);

    private readonly TidemarkClient? _client;
    private readonly TextWriter _log;
    private readonly string _fuseDirectory;
    private readonly StringBuilder _nbdfuseOutput = new();
    private Process? _nbdfuse;
    private string? _view;
    private string? _export;
    private string? _loopDevice;
    private bool _mounted;
    private string? _overlay;

    private MountedSnapshot(TidemarkClient? client, string snapshot, string workDirectory, TextWriter log, StepTimings? timings)
    {
        _client = client;
        Timings = timings ?? new StepTimings();
        _log = log;
        Snapshot = snapshot;
        WorkDirectory = workDirectory;
        _fuseDirectory = Path.Combine(workDirectory, "nbd");
        MountPoint = Path.Combine(workDirectory, "fs");
    }

    public string Snapshot { get; }

    /// <summary>How long attaching (nbdfuse and the loop device) and mounting (with any journal replay) took.</summary>
    public StepTimings Timings { get; }

    public string WorkDirectory { get; }

    /// <summary>Where the snapshot's file system is mounted (read-only).</summary>
    public string MountPoint { get; }

    public string? ViewName => _view;

    /// <summary>The read-write loop device over the view (what fsck checks).</summary>
    public string? LoopDevice => _loopDevice;

    /// <summary>The writable overlay over <see cref="MountPoint"/>, once <see cref="MountOverlayAsync"/> made it.</summary>
    public string? OverlayPoint => _overlay;

    /// <summary>Steps that teardown could not complete, each with what to run by hand.</summary>
    public IReadOnlyList<string> TeardownProblems { get; private set; } = [];

    private string DiskFile => Path.Combine(_fuseDirectory, "disk");

    /// <summary>Checks what the host must offer before anything is created on the server.</summary>
    public static void CheckHost()
    {
        if (!Environment.IsPrivilegedProcess)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, "mounting a snapshot needs root on the recovery host (losetup and mount); run 'tidemark recover' as root");
        }

        if (!File.Exists("/dev/fuse"))
        {
            throw new RecoveryException(RecoveryFailure.BadInput, "/dev/fuse is missing on this recovery host (nbdfuse needs FUSE; load the fuse module)");
        }

        HostCommand.Require("nbdfuse", "libnbd-bin");
        HostCommand.Require("losetup", "mount");
        HostCommand.Require("mount", "mount");
        HostCommand.Require("umount", "mount");
    }

    /// <param name="snapshot">VOLUME@SNAPSHOT, already resolved (see <see cref="SnapshotSelector"/>)</param>
    /// <param name="workDirectory">an empty directory of this recovery's own; mount points are made in it</param>
    /// <param name="timings">where the attach and mount steps are timed (issue 23's breakdown); null: kept only on <see cref="Timings"/></param>
    public static async Task<MountedSnapshot> MountAsync(TidemarkClient client, string snapshot, string workDirectory, TextWriter log, CancellationToken ct, StepTimings? timings = null)
    {
        CheckHost();
        var mounted = new MountedSnapshot(client, snapshot, workDirectory, log, timings);
        try
        {
            await mounted.SetUpAsync(ct);
            return mounted;
        }
        catch
        {
            await mounted.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Attaches and mounts an NBD export of a view that someone else made and deletes (a verifying
    /// agent: the server made the view and its export, ADR 0015); teardown leaves those two alone.
    /// </summary>
    public static async Task<MountedSnapshot> AttachAsync(string url, string snapshot, string workDirectory, TextWriter log, CancellationToken ct, StepTimings? timings = null)
    {
        CheckHost();
        var mounted = new MountedSnapshot(null, snapshot, workDirectory, log, timings);
        try
        {
            Directory.CreateDirectory(mounted._fuseDirectory);
            Directory.CreateDirectory(mounted.MountPoint);
            await mounted.AttachUrlAsync(url, ct);
            return mounted;
        }
        catch
        {
            await mounted.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Unmounts, runs <paramref name="check"/> on the loop device (fsck wants the file system
    /// unmounted; the journal was replayed into the view by the mount), then mounts read-only again.
    /// </summary>
    public async Task<T> WhileUnmountedAsync<T>(Func<string, Task<T>> check, CancellationToken ct)
    {
        var umount = await HostCommand.RunAsync("umount", [MountPoint], _commandTimeout, ct);
        if (umount.ExitCode != 0)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"{MountPoint} does not unmount for the check ({umount.Describe()})");
        }

        _mounted = false;
        var result = await check(_loopDevice!);
        await MountReadOnlyAsync(ct);
        return result;
    }

    private async Task SetUpAsync(CancellationToken ct)
    {
        Directory.CreateDirectory(_fuseDirectory);
        Directory.CreateDirectory(MountPoint);

        // The view is the only thing written to (journal replay); its name says what it is for, so
        // an operator who finds one left behind by a killed recovery knows it can go (names: at most 64),
        // and its purpose marks it for the server, which deletes it at its next start if the server
        // stopped under this recovery (RecoveryViews).
        var volume = Snapshot[..Snapshot.IndexOf('@', StringComparison.Ordinal)];
        var stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        var name = $"recover-{Truncate(volume, 30)}-{stamp}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))}";
        var viewStep = Timings.Measure("view + export");
        await _client!.CreateViewAsync(new CreateViewRequest(Snapshot, name, CreateViewRequest.RecoveryPurpose), ct);
        _view = name;
        var export = await _client!.CreateExportAsync(new CreateExportRequest(Target: name, Name: name), ct);
        _export = export.Name;
        // The TCP address, not LocalUrl: the recovery host need not be the server's host.
        var url = export.Url
            ?? throw new RecoveryException(RecoveryFailure.Refused, "the Tidemark server has no NBD listener, so a snapshot cannot be attached on this host; start it with --nbd");
        viewStep.Dispose();
        await _log.WriteLineAsync($"view {name} of {Snapshot} exported at {url}");

        await AttachUrlAsync(url, ct);
    }

    private async Task AttachUrlAsync(string url, CancellationToken ct)
    {
        var attach = Timings.Measure("attach (nbdfuse + loop)");
        _nbdfuse = StartNbdfuse(url);
        await WaitForDiskFileAsync(url, ct);

        // Read-write on purpose: the kernel replays an ext4/XFS journal on a read-only mount only when
        // the device is writable, and a crash-consistent snapshot needs that replay.
        var losetup = await HostCommand.RunAsync("losetup", ["--find", "--show", DiskFile], _commandTimeout, ct);
        if (losetup.ExitCode != 0)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"no loop device for the snapshot ({losetup.Describe()}); free one with 'losetup -D' or load the loop module");
        }

        _loopDevice = losetup.StandardOutput.Trim();
        attach.Dispose();

        using (Timings.Measure("mount (incl. journal replay)"))
        {
            await MountReadOnlyAsync(ct);
        }
    }

    private async Task MountReadOnlyAsync(CancellationToken ct)
    {
        // The file system type is probed (ext4, XFS...). Its content comes from a snapshot and is not
        // trusted: no device nodes, set-uid programs or executables from it.
        // XFS refuses a second file system with a UUID already mounted, and a view carries the UUID
        // of the live file system it was cut from, which is often mounted on this very host.
        var probe = HostCommand.Find("blkid") is null ? null : await HostCommand.RunAsync("blkid", ["-p", "-o", "value", "-s", "TYPE", _loopDevice!], _commandTimeout, ct);
        var options = probe?.StandardOutput.Trim() == "xfs" ? "ro,nodev,nosuid,noexec,nouuid" : "ro,nodev,nosuid,noexec";
        var mount = await HostCommand.RunAsync("mount", ["-o", options, _loopDevice!, MountPoint], _commandTimeout, ct);
        if (mount.ExitCode != 0)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"the file system of {Snapshot} does not mount ({mount.Describe()}); is this the volume the mail store is on, with a file system directly on it (no partition table)?");
        }

        _mounted = true;
        await _log.WriteLineAsync($"{Snapshot} mounted read-only on {MountPoint}");
    }

    private Process StartNbdfuse(string url)
    {
        var start = new ProcessStartInfo(HostCommand.Find("nbdfuse")!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };

        // nbdfuse MOUNTPOINT/FILENAME URI: it stays in the foreground as the FUSE server.
        start.ArgumentList.Add(DiskFile);
        start.ArgumentList.Add(url);
        var process = Process.Start(start) ?? throw new RecoveryException(RecoveryFailure.BadInput, "could not start nbdfuse");
        process.StandardInput.Close();
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private async Task WaitForDiskFileAsync(string url, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < _attachTimeout)
        {
            if (_nbdfuse!.HasExited)
            {
                throw new RecoveryException(RecoveryFailure.Unreachable, $"nbdfuse could not attach {url} (exit {_nbdfuse.ExitCode}): {NbdfuseOutput()}");
            }

            if (IsMountPoint(_fuseDirectory) && File.Exists(DiskFile) && new FileInfo(DiskFile).Length > 0)
            {
                return;
            }

            await Task.Delay(50, ct);
        }

        throw new RecoveryException(RecoveryFailure.Unreachable, $"nbdfuse did not attach {url} within {_attachTimeout.TotalSeconds:F0} s: {NbdfuseOutput()}");
    }

    /// <summary>
    /// An overlayfs whose lower layer is the read-only mount: a program that insists on writing beside
    /// the data it reads (Dovecot updates its index files) writes into an upper directory on this host,
    /// never into the view (docs/adr/0012). Torn down before the mount under it.
    /// </summary>
    public async Task<string> MountOverlayAsync(CancellationToken ct)
    {
        var upper = Directory.CreateDirectory(Path.Combine(WorkDirectory, "upper")).FullName;
        var work = Directory.CreateDirectory(Path.Combine(WorkDirectory, "overlay-work")).FullName;
        var merged = Directory.CreateDirectory(Path.Combine(WorkDirectory, "merged")).FullName;
        var mount = await HostCommand.RunAsync("mount", ["-t", "overlay", "overlay", "-o", $"lowerdir={MountPoint},upperdir={upper},workdir={work},nodev,nosuid,noexec", merged], _commandTimeout, ct);
        if (mount.ExitCode != 0)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"an overlay over the snapshot does not mount ({mount.Describe()}); this recovery host needs overlayfs (modprobe overlay)");
        }

        _overlay = merged;
        return merged;
    }

    public async ValueTask DisposeAsync()
    {
        var problems = new List<string>();
        if (_overlay is not null && IsMountPoint(_overlay))
        {
            if (!await TryAsync("umount", [_overlay]) && !await TryAsync("umount", ["-l", _overlay]))
            {
                problems.Add($"{_overlay} is still mounted: umount -l {_overlay}");
            }
        }

        if (_mounted || IsMountPoint(MountPoint))
        {
            if (!await TryAsync("umount", [MountPoint]) && !await TryAsync("umount", ["-l", MountPoint]))
            {
                problems.Add($"{MountPoint} is still mounted: umount -l {MountPoint}");
            }

            _mounted = false;
        }

        if (_loopDevice is not null && !await TryAsync("losetup", ["-d", _loopDevice]))
        {
            problems.Add($"loop device {_loopDevice} is still attached: losetup -d {_loopDevice}");
        }

        await DetachNbdfuseAsync(problems);
        if (_export is not null)
        {
            try
            {
                await _client!.DeleteExportAsync(_export, CancellationToken.None);
            }
            catch (Exception e) when (e is TidemarkApiException or HttpRequestException or TaskCanceledException)
            {
                problems.Add($"export {_export} is left on the server ({e.Message}): tidemark export delete {_export}");
            }
        }

        if (_view is not null)
        {
            await DeleteViewAsync(_view, problems);
        }

        TeardownProblems = problems;
        foreach (var problem in problems)
        {
            await _log.WriteLineAsync($"warning: {problem}");
        }
    }

    /// <summary>
    /// Deletes the view. nbdfuse has exited, but the server ends its NBD session only once it has read
    /// the close, a moment later; until then it refuses the delete as busy (a client is attached), so a
    /// busy refusal is tried again for a few seconds before the view is reported as left behind.
    /// </summary>
    private async Task DeleteViewAsync(string view, List<string> problems)
    {
        var busy = ErrorCodes.For(StorageError.Busy);
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await _client!.DeleteVolumeAsync(view, ct: CancellationToken.None);
                return;
            }
            catch (TidemarkApiException e) when (e.Code == busy && waited.Elapsed < _sessionEndWait)
            {
                await Task.Delay(100);
            }
            catch (Exception e) when (e is TidemarkApiException or HttpRequestException or TaskCanceledException)
            {
                problems.Add($"view {view} is left on the server ({e.Message}): tidemark view delete {view}");
                return;
            }
        }
    }

    private async Task DetachNbdfuseAsync(List<string> problems)
    {
        if (_nbdfuse is null)
        {
            return;
        }

        // The loop device lets go of the FUSE file asynchronously: retry the unmount for a while.
        var deadline = Stopwatch.StartNew();
        while (IsMountPoint(_fuseDirectory) && deadline.Elapsed < TimeSpan.FromSeconds(15))
        {
            if (HostCommand.Find("fusermount3") is not null ? await TryAsync("fusermount3", ["-u", _fuseDirectory]) : await TryAsync("umount", [_fuseDirectory]))
            {
                break;
            }

            await Task.Delay(200);
        }

        if (IsMountPoint(_fuseDirectory) && !await TryAsync("umount", ["-l", _fuseDirectory]))
        {
            problems.Add($"{_fuseDirectory} (nbdfuse) is still mounted: umount -l {_fuseDirectory}");
        }

        // nbdfuse exits once unmounted; one that does not is killed by its PID (ours).
        try
        {
            await _nbdfuse.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (TimeoutException)
        {
            _nbdfuse.Kill();
            await _nbdfuse.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);
        }

        _nbdfuse.Dispose();
        _nbdfuse = null;
    }

    private static async Task<bool> TryAsync(string tool, string[] arguments)
    {
        try
        {
            return (await HostCommand.RunAsync(tool, arguments, TimeSpan.FromSeconds(30))).ExitCode == 0;
        }
        catch (RecoveryException)
        {
            return false;
        }
    }

    /// <summary>Whether /proc/self/mountinfo lists <paramref name="path"/> as a mount point (field 5, octal-escaped).</summary>
    internal static bool IsMountPoint(string path)
    {
        var target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4 && UnescapeMountField(fields[4]) == target)
            {
                return true;
            }
        }

        return false;
    }

    public static string UnescapeMountField(string field) =>
        field.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal)
            .Replace("\\012", "\n", StringComparison.Ordinal).Replace("\\134", "\\", StringComparison.Ordinal);

    private static string Truncate(string text, int length) => text.Length <= length ? text : text[..length];

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_nbdfuseOutput)
            {
                _nbdfuseOutput.AppendLine(line);
            }
        }
    }

    private string NbdfuseOutput()
    {
        lock (_nbdfuseOutput)
        {
            return _nbdfuseOutput.ToString().Trim();
        }
    }
}
