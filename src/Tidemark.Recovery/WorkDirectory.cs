using System.Security.Cryptography;

namespace Tidemark.Recovery;

/// <summary>
/// A work directory for mounting a view, made under a root this tool owns rather than the temp
/// directory: the private server started on the view (Dovecot for a mail recovery, PostgreSQL for an
/// agent's verification) runs as the data's owner and must enter it, which a 0700 TMPDIR (pam_tmpdir,
/// systemd PrivateTmp setups) forbids. The root is made 0755; every directory above it must be
/// enterable by others, and the root must not be a link or writable by others (the tool runs as root
/// and mounts there). The work directory itself is traversable, not listable. Shared by the mail
/// recovery (<see cref="Mail.MailRecovery"/>) and the agent's verifier.
/// </summary>
public static class WorkDirectory
{
    private const UnixFileMode Traversable = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    /// <param name="root">the work root (made if missing)</param>
    /// <param name="prefix">the work directory's name before its random part, e.g. "tidemark-recover-"</param>
    /// <param name="setting">what the operator sets to choose another root (named in every refusal)</param>
    /// <param name="defaultRoot">the root used when nothing is set (named in every refusal)</param>
    /// <param name="reacher">who must enter it, e.g. "a private Dovecot running as the mail's owner"</param>
    public static string Create(string root, string prefix, string setting, string defaultRoot, string reacher)
    {
        root = Path.GetFullPath(root);
        if (!Directory.Exists(root))
        {
            // Set again after creating: the umask filters the mode CreateDirectory is given.
            const UnixFileMode open = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
            Directory.CreateDirectory(root, open);
            File.SetUnixFileMode(root, open);
        }

        var info = new DirectoryInfo(root);
        if (info.LinkTarget is not null || (info.UnixFileMode & (UnixFileMode.GroupWrite | UnixFileMode.OtherWrite)) != 0)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"the work root {root} is a symbolic link or writable by others; give {setting} a directory of root's own (default {defaultRoot})");
        }

        for (var directory = info; directory is not null; directory = directory.Parent)
        {
            if ((directory.UnixFileMode & UnixFileMode.OtherExecute) == 0)
            {
                throw new RecoveryException(RecoveryFailure.BadInput, $"{directory.FullName} cannot be entered by other users (mode {Convert.ToString((int)directory.UnixFileMode, 8)}), so {reacher} could not reach the work root {root}; set {setting} to a directory under paths every user can enter (default {defaultRoot})");
            }
        }

        var work = Path.Combine(root, prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)));
        Directory.CreateDirectory(work, Traversable);

        // CreateDirectory's mode is filtered by the umask; the exact mode matters here.
        File.SetUnixFileMode(work, Traversable);
        return work;
    }

    /// <summary>
    /// Deletes a work directory unless something is still mounted under it (teardown that could not
    /// unmount: deleting through that mount would reach into the view). Returns false when it stays.
    /// </summary>
    public static bool Remove(string path)
    {
        var prefix = Path.TrimEndingDirectorySeparator(path) + "/";
        var stillMounted = File.ReadLines("/proc/self/mountinfo")
            .Select(l => l.Split(' '))
            .Any(f => f.Length > 4 && MountedSnapshot.UnescapeMountField(f[4]).StartsWith(prefix, StringComparison.Ordinal));
        if (stillMounted)
        {
            return false;
        }

        try
        {
            Directory.Delete(path, recursive: true);
            return true;
        }
        catch (IOException)
        {
            // Nothing in it matters once unmounted; the caller says where it is.
            return false;
        }
    }
}
