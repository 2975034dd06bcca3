using System.Globalization;
using System.Runtime.Versioning;
using System.Text.RegularExpressions;
using Tidemark.Recovery;
using Tidemark.Recovery.Mail;

namespace Tidemark.Agent;

/// <summary>
/// The verification of a mail store on a view (ADR 0015): the recovery's own private Dovecot
/// (<see cref="PrivateDovecot"/>, one account per user home found) over a writable overlay of the
/// read-only view, so Dovecot may rebuild indexes without touching the view; then for every user
/// `doveadm force-resync` of every mailbox (Dovecot reads every message file and index, and fails on
/// what it cannot) and `doveadm mailbox status` to count what it opened.
/// </summary>
[SupportedOSPlatform("linux")]
internal static partial class MailCheck
{
    private static readonly TimeSpan _doveadmTimeout = TimeSpan.FromMinutes(10);

    /// <summary>Checks each configured store whose mail root is on the volume; returns the first failure, or null.</summary>
    public static async Task<string?> RunAsync(AgentConfig config, MountedSnapshot mounted, List<AgentMountEntry> mounts, string work, List<string> checks, CancellationToken ct)
    {
        foreach (var store in config.Mail)
        {
            var root = LocalMounts.Normalize(store.MailRoot);
            var mount = mounts
                .Where(m => root == LocalMounts.Normalize(m.Path) || root.StartsWith(LocalMounts.Normalize(m.Path) + "/", StringComparison.Ordinal))
                .OrderByDescending(m => m.Path.Length)
                .FirstOrDefault();
            if (mount is null)
            {
                continue;
            }

            if (HostCommand.Find("dovecot") is null || HostCommand.Find("doveadm") is null)
            {
                checks.Add($"mail store {store.Name}: Dovecot is not installed on this host, mailboxes not opened");
                continue;
            }

            var overlay = mounted.OverlayPoint ?? await mounted.MountOverlayAsync(ct);
            var viewRoot = Path.Combine(overlay, Path.GetRelativePath(LocalMounts.Normalize(mount.Path), root));
            var (failure, opened) = await CheckStoreAsync(store, viewRoot, Path.Combine(work, $"dc-{checks.Count}"), ct);
            if (failure is not null)
            {
                return $"mail store {store.Name}: {failure}";
            }

            checks.Add($"mail store {store.Name}: {opened}");
        }

        return null;
    }

    /// <summary>The failure, or what Dovecot opened.</summary>
    private static async Task<(string? Failure, string? Opened)> CheckStoreAsync(AgentMailEntry store, string viewRoot, string directory, CancellationToken ct)
    {
        if (!Directory.Exists(viewRoot))
        {
            return ($"{store.MailRoot} is not in the view", null);
        }

        var (location, storeDirectory) = store.Format == "mdbox" ? ("mdbox:~/mdbox", "mdbox") : ("maildir:~/Maildir", "Maildir");
        PrivateDovecot dovecot;
        try
        {
            dovecot = await PrivateDovecot.StartAsync(directory, viewRoot, location, storeDirectory, ct);
        }
        catch (RecoveryException ex)
        {
            return ($"Dovecot does not start on the view ({ex.Message})", null);
        }

        await using (dovecot)
        {
            var config = Path.Combine(directory, "dovecot.conf");
            var (mailboxes, messages) = (0, 0L);
            foreach (var user in dovecot.Users)
            {
                var resync = await HostCommand.RunAsync("doveadm", ["-c", config, "force-resync", "-u", user, "*"], _doveadmTimeout, ct);
                if (resync.ExitCode != 0)
                {
                    return ($"Dovecot cannot open the mailboxes of {user} (doveadm force-resync exit {resync.ExitCode}): {SnapshotVerifier.Tail(resync.StandardError + "\n" + dovecot.LogTail())}", null);
                }

                // A damaged mdbox storage file does not fail the resync: Dovecot logs "Error: Corrupted
                // dbox file", saves a .broken copy, rebuilds without the messages it lost and exits 0.
                var errors = resync.StandardError.Split('\n').Where(l => l.Contains(": Error: ", StringComparison.Ordinal)).ToList();
                if (errors.Count > 0)
                {
                    return ($"Dovecot found damage opening the mailboxes of {user}: {SnapshotVerifier.Tail(string.Join('\n', errors))}", null);
                }

                var status = await HostCommand.RunAsync("doveadm", ["-c", config, "mailbox", "status", "-u", user, "messages", "*"], _doveadmTimeout, ct);
                if (status.ExitCode != 0)
                {
                    return ($"Dovecot cannot read the mailbox status of {user} (exit {status.ExitCode}): {SnapshotVerifier.Tail(status.StandardError)}", null);
                }

                foreach (Match match in MessagesField().Matches(status.StandardOutput))
                {
                    mailboxes++;
                    messages += long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
                }
            }

            return (null, string.Create(CultureInfo.InvariantCulture, $"Dovecot opened {mailboxes} mailboxes of {dovecot.Users.Count} users, {messages} messages"));
        }
    }

    [GeneratedRegex(@"messages=(\d+)")]
    private static partial Regex MessagesField();
}
