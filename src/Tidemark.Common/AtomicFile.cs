using System.Text;

namespace Tidemark;

/// <summary>Small state files that must be whole after a crash: write a temp file, fsync, rename over, fsync the directory.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string contents, UnixFileMode? mode = null)
    {
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        var temp = Path.Combine(directory, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, Share = FileShare.None };
        if (mode is { } m && !OperatingSystem.IsWindows())
        {
            // The mode applies only to a new file: a temp file left by a crash must not keep a wider one.
            File.Delete(temp);
            options.UnixCreateMode = m;
        }

        using (var stream = new FileStream(temp, options))
        {
            stream.Write(Encoding.UTF8.GetBytes(contents));
            stream.Flush(flushToDisk: true);
        }

        File.Move(temp, full, overwrite: true);
        SyncDirectory(directory);
    }

    /// <summary>The rename is durable only once the directory entry is (POSIX: fsync the directory).</summary>
    private static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            using var handle = File.OpenHandle(directory, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.None);
            RandomAccess.FlushToDisk(handle);
        }
        catch (UnauthorizedAccessException)
        {
            // Some file systems refuse to open directories; the rename is still atomic there.
        }
        catch (IOException)
        {
            // Likewise: atomicity holds, only the durability of this one rename is best effort.
        }
    }
}
