namespace Tidemark.TestKit;

/// <summary>
/// A directory under /tmp, removed with everything in it when the test ends. It is made traversable
/// (0755, as /tmp's own subdirectories usually are) so that a service running as another user
/// (PostgreSQL as postgres, Dovecot as dovecot) can reach its own subdirectory; what must stay
/// private goes in a subdirectory of its own mode (a server's data directory makes its own).
/// </summary>
public sealed class TempDirectory : IDisposable
{
    /// <param name="prefix">the directory name's start, saying which suite left it should it stay behind</param>
    public TempDirectory(string prefix = "tidemark-test-")
    {
        Path = Directory.CreateTempSubdirectory(prefix).FullName;
        if (OperatingSystem.IsWindows())
        {
            return; // no modes there; the suites run on Linux
        }

        File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
    }

    public string Path { get; }

    public string Combine(string name) => System.IO.Path.Combine(Path, name);

    public string CreateDirectory(string name) => Directory.CreateDirectory(Combine(name)).FullName;

    public void Dispose()
    {
        // Never descend into a file system that is still mounted below us (a failed unmount):
        // deleting through it would destroy what the test left for inspection, or hang on FUSE.
        if (MountTable.AnyMountedUnder(Path))
        {
            return;
        }

        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A process we killed may still be releasing a file; /tmp is cleaned eventually.
        }
        catch (UnauthorizedAccessException)
        {
            // Same: left for /tmp's own cleaning.
        }
    }
}
