using System.Diagnostics;
using System.Text;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// An NBD export as a kernel block device: nbdfuse presents the export as a file in a FUSE mount
/// (WORK/fuse/disk), losetup puts a loop device on that file, and the device can then carry a real
/// ext4 mounted at WORK/fs. Disposing takes the stack down in reverse (umount, losetup -d, unmount
/// the FUSE mount, and nbdfuse by PID if it is still running) and never throws, so every step runs
/// even after a failed test.
/// </summary>
internal sealed class AttachedExport : IAsyncDisposable
{
    private static readonly TimeSpan _attachTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan _commandTimeout = TimeSpan.FromSeconds(120);

    private readonly Process _nbdfuse;
    private readonly StringBuilder _nbdfuseLog = new();
    private readonly string _fuseDirectory;

    private AttachedExport(Process nbdfuse, string workDirectory)
    {
        _nbdfuse = nbdfuse;
        _fuseDirectory = Directory.CreateDirectory(Path.Combine(workDirectory, "fuse")).FullName;
        MountPoint = Directory.CreateDirectory(Path.Combine(workDirectory, "fs")).FullName;
        nbdfuse.OutputDataReceived += (_, e) => Append(e.Data);
        nbdfuse.ErrorDataReceived += (_, e) => Append(e.Data);
        nbdfuse.BeginOutputReadLine();
        nbdfuse.BeginErrorReadLine();
    }

    /// <summary>The file nbdfuse serves: reads and writes on it are NBD reads and writes.</summary>
    public string DiskFile => Path.Combine(_fuseDirectory, "disk");

    public string LoopDevice { get; private set; } = string.Empty;

    /// <summary>Where <see cref="MountAsync"/> mounts the file system.</summary>
    public string MountPoint { get; }

    public bool IsMounted => MountTable.IsMounted(MountPoint);

    public string NbdfuseLog
    {
        get
        {
            lock (_nbdfuseLog)
            {
                return _nbdfuseLog.ToString();
            }
        }
    }

    public static async Task<AttachedExport> AttachAsync(string nbdUrl, string workDirectory, bool readOnly)
    {
        Directory.CreateDirectory(Path.Combine(workDirectory, "fuse"));

        // nbdfuse stays in the foreground (it is the FUSE server); -r makes the file read-only.
        List<string> arguments = readOnly ? ["-r"] : [];
        arguments.AddRange([Path.Combine(workDirectory, "fuse", "disk"), nbdUrl]);
        var attached = new AttachedExport(ProcessRunner.Start(Tool("nbdfuse"), arguments, redirectOutput: true), workDirectory);
        try
        {
            await attached.WaitForDiskFileAsync(nbdUrl);
            List<string> losetup = readOnly ? ["--read-only"] : [];
            losetup.AddRange(["--find", "--show", attached.DiskFile]);
            var result = await RunAsync("losetup", [.. losetup]);
            attached.LoopDevice = result.StandardOutput.Trim();
            Assert.StartsWith("/dev/loop", attached.LoopDevice, StringComparison.Ordinal);
            return attached;
        }
        catch
        {
            await attached.DisposeAsync();
            throw;
        }
    }

    public Task FormatExt4Async() => RunAsync("mkfs.ext4", "-q", LoopDevice);

    public Task FormatXfsAsync() => RunAsync("mkfs.xfs", "-q", LoopDevice);

    public Task MountAsync(string options, string type = "ext4") => RunAsync("mount", "-t", type, "-o", options, LoopDevice, MountPoint);

    /// <summary>e2fsck -f -n: a forced, read-only check; exit 0 means no problem found.</summary>
    public Task<ProcessResult> CheckFileSystemAsync() =>
        ProcessRunner.RunAsync(_commandTimeout, Tool("e2fsck"), "-f", "-n", LoopDevice);

    public async ValueTask DisposeAsync()
    {
        if (IsMounted && await ProcessRunner.TryRunAsync(Tool("umount"), MountPoint) is not { ExitCode: 0 })
        {
            // Something still holds a file open (a process the test failed to stop): detach it anyway.
            await ProcessRunner.TryRunAsync(Tool("umount"), "-l", MountPoint);
        }

        if (LoopDevice.Length > 0)
        {
            await ProcessRunner.TryRunAsync(Tool("losetup"), "-d", LoopDevice);
        }

        // The loop device lets go of the FUSE file asynchronously: retry the unmount for a while.
        // fusermount3 (package fuse3) is the usual way; as root a plain umount does the same.
        var (unmount, unmountArguments) = HostRequirements.FindOnPath("fusermount3") is { } fusermount
            ? (fusermount, new[] { "-u", _fuseDirectory })
            : (Tool("umount"), new[] { _fuseDirectory });
        var deadline = Stopwatch.StartNew();
        while (MountTable.IsMounted(_fuseDirectory) && deadline.Elapsed < TimeSpan.FromSeconds(15))
        {
            if (await ProcessRunner.TryRunAsync(unmount, unmountArguments) is { ExitCode: 0 })
            {
                break;
            }

            await Task.Delay(250);
        }

        if (MountTable.IsMounted(_fuseDirectory))
        {
            await ProcessRunner.TryRunAsync(Tool("umount"), "-l", _fuseDirectory);
        }

        // nbdfuse exits by itself once unmounted; one that does not is killed by PID.
        try
        {
            await _nbdfuse.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (TimeoutException)
        {
            Signals.TrySend(_nbdfuse.Id, Signals.SigKill);
            await _nbdfuse.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);
        }

        _nbdfuse.Dispose();
    }

    public static string Tool(string name) => HostRequirements.FindOnPath(name) ?? name;

    private static async Task<ProcessResult> RunAsync(string tool, params string[] arguments) =>
        (await ProcessRunner.RunAsync(_commandTimeout, Tool(tool), arguments)).AssertSuccess();

    private async Task WaitForDiskFileAsync(string nbdUrl)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < _attachTimeout)
        {
            if (_nbdfuse.HasExited)
            {
                throw new InvalidOperationException($"nbdfuse {nbdUrl} exited with {_nbdfuse.ExitCode}:\n{NbdfuseLog}");
            }

            if (MountTable.IsMounted(_fuseDirectory) && File.Exists(DiskFile) && new FileInfo(DiskFile).Length > 0)
            {
                return;
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"nbdfuse did not present {DiskFile} for {nbdUrl} within {_attachTimeout}:\n{NbdfuseLog}");
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_nbdfuseLog)
            {
                _nbdfuseLog.AppendLine(line);
            }
        }
    }
}
