using System.Security.Cryptography;
using System.Text;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// Where the header indexes of snapshots live on the recovery host (docs/adr/0012, "Header index"):
/// DIRECTORY/KEY/USER.idx, KEY a hash of the snapshot's identity, USER a hash of the user's name.
/// Mail headers are private: the directories are 0700 and the files 0600, owned by whoever runs the
/// recovery (root). A file is written to a temporary name and renamed, so a reader sees a whole index
/// or none. The least recently used snapshots' indexes are removed beyond <see cref="MaxSnapshots"/>.
/// </summary>
public sealed class MailIndexCache
{
    /// <summary>The CLI's default, on the recovery host; overridden by --index-dir or TIDEMARK_MAIL_INDEX_DIR.</summary>
    public const string DefaultDirectory = "/var/cache/tidemark/mail-index";

    public const string EnvironmentVariable = "TIDEMARK_MAIL_INDEX_DIR";

    /// <summary>About 50 MB each at 200,000 messages: a month of daily snapshots fits, older ones go first.</summary>
    public const int MaxSnapshots = 40;

    private const UnixFileMode PrivateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    private readonly string _directory;

    public MailIndexCache(string root, MailIndexKey key)
    {
        Root = root;
        Key = key;
        _directory = Path.Combine(root, key.DirectoryName);
    }

    public string Root { get; }

    public MailIndexKey Key { get; }

    public string PathOf(string user) => Path.Combine(_directory, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(user)))[..32] + ".idx");

    /// <summary>The user's index when there is a usable one; null (with why, when a file was there) otherwise.</summary>
    public IReadOnlyList<MailIndexEntry>? TryLoad(string user, out string? problem)
    {
        var path = PathOf(user);
        byte[] bytes;
        try
        {
            if (!File.Exists(path))
            {
                problem = null;
                return null;
            }

            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            problem = $"it cannot be read ({e.Message})";
            return null;
        }

        var entries = MailIndexFile.Read(bytes, Key.Identity, user, out problem);
        if (entries is not null)
        {
            Touch();
        }

        return entries;
    }

    public void Save(string user, IReadOnlyCollection<MailIndexEntry> entries)
    {
        Directory.CreateDirectory(Root, PrivateDirectory);
        Directory.CreateDirectory(_directory, PrivateDirectory);
        var path = PathOf(user);
        var temporary = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var file = new FileStream(temporary, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            {
                file.Write(MailIndexFile.Write(Key.Identity, user, entries));
                file.Flush(flushToDisk: true);
            }

            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }

        Touch();
        Prune();
    }

    /// <summary>Marks this snapshot's indexes as used now, so pruning removes the least recently used first.</summary>
    private void Touch()
    {
        try
        {
            Directory.SetLastWriteTimeUtc(_directory, DateTime.UtcNow);
        }
        catch (IOException)
        {
            // Only the pruning order depends on it.
        }
    }

    /// <summary>Keeps the <see cref="MaxSnapshots"/> most recently used snapshots' indexes.</summary>
    private void Prune()
    {
        var stale = new DirectoryInfo(Root).EnumerateDirectories()
            .Where(d => d.LinkTarget is null && d.Name.Length == 32 && d.Name.All(char.IsAsciiHexDigitLower))
            .OrderByDescending(d => d.LastWriteTimeUtc)
            .Skip(MaxSnapshots);
        foreach (var directory in stale)
        {
            try
            {
                directory.Delete(recursive: true);
            }
            catch (IOException)
            {
                // Another recovery may be using it right now; the next prune takes it.
            }
        }
    }
}
