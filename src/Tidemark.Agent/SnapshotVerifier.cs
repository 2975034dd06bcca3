using System.Diagnostics;
using System.Globalization;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;
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
/// opens every mailbox (<see cref="MailCheck"/>). A group's cut comes as one request with a view per
/// member: all are attached together, so a cluster whose WAL is on another member starts on the pair
/// (<see cref="PostgresCheck"/>). Everything is torn down before the answer, also on failure; the
/// server then deletes the views. One verification at a time per host.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class SnapshotVerifier(AgentConfig config, ILogger logger)
{
    private static readonly TimeSpan _fsckTimeout = TimeSpan.FromMinutes(30);
    private int _running;

    /// <summary>At most this many snapshots in one verification (a group's cut): each is a mount and an nbdfuse process on this host.</summary>
    public const int MaxMembers = 16;

    public async Task<VerifyResultDto> VerifyAsync(VerifyRequest request, CancellationToken ct)
    {
        var members = CheckRequest(request);
        var started = Stopwatch.GetTimestamp();
        var declared = members.Select(m => (Member: m, Mounts: config.Mounts.Where(x => x.Volume == m.Volume).ToList())).ToList();
        var group = members.Count > 1;
        if (declared.All(d => d.Mounts.Count == 0))
        {
            var volumes = string.Join(", ", members.Select(m => m.Volume));
            return new VerifyResultDto(VerifyResultDto.NotChecked, $"nothing on host {config.HostName} is declared on volume {volumes}, so it knows no check for it; verify with the host that mounts it", [], 0);
        }

        if (Interlocked.Exchange(ref _running, 1) == 1)
        {
            throw new StorageException(StorageError.Busy, "another verification runs on this host; one at a time");
        }

        var checks = new List<string>();
        var log = new StringWriter(CultureInfo.InvariantCulture);
        var views = new List<VerifiedView>();
        var teardown = new List<string>();
        string? work = null;
        try
        {
            try
            {
                MountedSnapshot.CheckHost();
            }
            catch (RecoveryException ex)
            {
                return Done(VerifyResultDto.NotChecked, $"host {config.HostName} cannot mount a view: {ex.Message}");
            }

            try
            {
                // PostgreSQL and Dovecot run as the data's owner and must reach their overlays under here.
                work = WorkDirectory.Create(config.VerifyWorkRoot ?? AgentConfig.DefaultVerifyWorkRoot, "tidemark-verify-", "verifyWorkRoot in agent.json", AgentConfig.DefaultVerifyWorkRoot, "a private PostgreSQL or Dovecot running as the data's owner");
            }
            catch (Exception ex) when (ex is RecoveryException or IOException or UnauthorizedAccessException)
            {
                return Done(VerifyResultDto.NotChecked, $"host {config.HostName} cannot make its verification work directory: {ex.Message}");
            }

            string? failure = null;
            string? notChecked = null;
            try
            {
                foreach (var (member, mounts) in declared)
                {
                    var prefix = group ? $"{member.Volume}: " : "";
                    if (mounts.Count == 0)
                    {
                        // A member this host knows nothing of (a volume of the group used elsewhere): not mounted here.
                        checks.Add($"{prefix}nothing declared on this host, not mounted");
                        continue;
                    }

                    try
                    {
                        // Traversable whatever the umask: the overlay under it is where PostgreSQL and Dovecot run.
                        var memberWork = Path.Combine(work, $"m{views.Count}");
                        Directory.CreateDirectory(memberWork);
                        File.SetUnixFileMode(memberWork, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
                        var mounted = await MountedSnapshot.AttachAsync(member.ExportUrl, member.Snapshot, memberWork, log, ct);
                        views.Add(new VerifiedView(member.Volume, mounted, mounts));
                        checks.Add($"{prefix}mounted read-only");
                    }
                    catch (RecoveryException ex) when (ex.Failure == RecoveryFailure.Unreachable)
                    {
                        notChecked = $"{prefix}the view's export did not attach: {ex.Message}";
                        break;
                    }
                    catch (RecoveryException ex)
                    {
                        failure = $"{prefix}the file system does not mount read-only: {ex.Message}";
                        break;
                    }
                }

                if (failure is null && notChecked is null)
                {
                    foreach (var view in views)
                    {
                        failure ??= await CheckFileSystemAsync(view.Mounted, group ? $"{view.Volume}: " : "", checks, ct);
                    }

                    failure ??= await PostgresCheck.RunAsync(config, views, work, checks, logger, ct);
                    foreach (var view in views)
                    {
                        failure ??= await MailCheck.RunAsync(config, view.Mounted, view.Mounts, work, checks, ct);
                    }
                }
            }
            catch (NotCheckedException ex)
            {
                (failure, notChecked) = (null, ex.Message);
            }
            finally
            {
                // In reverse: an overlay or link of a later view may lean on an earlier one.
                for (var i = views.Count - 1; i >= 0; i--)
                {
                    await views[i].Mounted.DisposeAsync();
                    teardown.AddRange(views[i].Mounted.TeardownProblems);
                }
            }

            if (notChecked is not null)
            {
                return Done(VerifyResultDto.NotChecked, notChecked, teardown);
            }

            if (teardown.Count > 0)
            {
                AgentLog.VerificationTeardownLeft(logger, request.Snapshot, string.Join("; ", teardown));
            }

            return Done(failure is null ? VerifyResultDto.Passed : VerifyResultDto.Failed, failure, teardown);
        }
        finally
        {
            if (work is not null && !WorkDirectory.Remove(work))
            {
                AgentLog.VerificationDirectoryKept(logger, work);
            }

            Volatile.Write(ref _running, 0);
        }

        VerifyResultDto Done(string verdict, string? reason, IReadOnlyList<string>? output = null)
        {
            AgentLog.Verified(logger, string.Join(", ", members.Select(m => m.Snapshot)), verdict, reason);
            return new VerifyResultDto(verdict, reason, checks, Stopwatch.GetElapsedTime(started).TotalSeconds, output is { Count: > 0 } ? output : null);
        }
    }

    /// <summary>The request's snapshots (the first, then a group's other members), each checked: hostile input never reaches nbdfuse.</summary>
    private static List<VerifyMember> CheckRequest(VerifyRequest request)
    {
        List<VerifyMember> members = [new VerifyMember(request.Snapshot, request.Volume, request.ExportUrl), .. request.Members ?? []];
        if (members.Count > MaxMembers)
        {
            throw new StorageException(StorageError.InvalidArgument, $"a verification checks at most {MaxMembers} snapshots of one cut, not {members.Count}");
        }

        foreach (var member in members)
        {
            if (member is null || string.IsNullOrEmpty(member.Volume) || member.Volume.Length > 256 || string.IsNullOrEmpty(member.Snapshot) || member.Snapshot.Length > 512)
            {
                throw new StorageException(StorageError.InvalidArgument, "a verification names each snapshot and its volume");
            }

            // Only an NBD export reaches nbdfuse: never a local file or another scheme from the wire.
            if (member.ExportUrl is not { Length: <= 2048 } url || !(url.StartsWith("nbd://", StringComparison.Ordinal) || url.StartsWith("nbds://", StringComparison.Ordinal)))
            {
                throw new StorageException(StorageError.InvalidArgument, "a verification needs the nbd:// URL of each view's export");
            }
        }

        if (members.Select(m => m.Volume).Distinct(StringComparer.Ordinal).Count() != members.Count)
        {
            throw new StorageException(StorageError.InvalidArgument, "a verification names each volume of the cut once");
        }

        return members;
    }

    /// <summary>fsck -n on the loop device, unmounted for it (the mount before replayed the journal into the view). Returns the failure, or null.</summary>
    private static async Task<string?> CheckFileSystemAsync(MountedSnapshot mounted, string prefix, List<string> checks, CancellationToken ct)
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
            checks.Add($"{prefix}{type}: no fsck known, mounted only");
            return null;
        }

        if (HostCommand.Find(command[0]) is null)
        {
            checks.Add($"{prefix}{command[0]} is not installed: mounted only");
            return null;
        }

        var result = await mounted.WhileUnmountedAsync(device => HostCommand.RunAsync(command[0], [.. command[1..], device], _fsckTimeout, ct), ct);
        var what = string.Join(' ', command);
        if (result.ExitCode != 0)
        {
            return $"{prefix}{what} found problems in the {type} file system (exit {result.ExitCode}): {Tail(result.StandardOutput + "\n" + result.StandardError)}";
        }

        checks.Add($"{prefix}{what}: clean");
        return null;
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

    /// <summary>The last lines of a tool's output, enough to say why (bounded: it goes into a record and an event).</summary>
    internal static string Tail(string text)
    {
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var tail = string.Join(" | ", lines.TakeLast(6));
        return tail.Length > 1000 ? tail[^1000..] : tail;
    }
}
