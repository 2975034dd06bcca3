namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// What the machine must offer for a real kernel file system on a volume. A missing piece fails the
/// test with a message that names it (never a skip: these tests are how the project knows a real
/// file system and a real database work on its volumes).
/// </summary>
internal static class HostRequirements
{
    private static readonly string[] _fileSystemTools = ["nbdfuse", "losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "fsfreeze", "sync"];

    public static void RequireFileSystemStack()
    {
        var missing = new List<string>();
        if (!Environment.IsPrivilegedProcess)
        {
            missing.Add("root (losetup and mount need it; run the interop tests as root)");
        }

        if (!File.Exists("/dev/fuse"))
        {
            missing.Add("/dev/fuse (nbdfuse needs FUSE; load the fuse module or give the container /dev/fuse)");
        }

        if (!File.Exists("/dev/loop-control"))
        {
            missing.Add("/dev/loop-control (no loop devices; load the loop module or give the container loop devices)");
        }

        missing.AddRange(_fileSystemTools.Where(t => FindOnPath(t) is null)
            .Select(t => $"{t} on PATH (scripts/install-deps installs libnbd-bin, util-linux, e2fsprogs)"));
        Require(missing);
    }

    /// <summary>The bin directory of Debian's PostgreSQL (/usr/lib/postgresql/VERSION/bin), newest version first.</summary>
    public static string RequirePostgres()
    {
        RequireFileSystemStack();
        var missing = new List<string>();
        string[] tools = ["initdb", "pg_ctl", "pgbench", "pg_amcheck", "psql"];
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql")
                .Select(d => Path.Combine(d, "bin"))
                .Where(b => tools.All(t => File.Exists(Path.Combine(b, t))))
                .OrderByDescending(b => int.TryParse(Path.GetFileName(Path.GetDirectoryName(b)), out var v) ? v : 0)
                .FirstOrDefault()
            : null;
        if (bin is null)
        {
            missing.Add("PostgreSQL with initdb, pg_ctl, pgbench, pg_amcheck and psql under /usr/lib/postgresql/*/bin (apt-get install postgresql)");
        }

        if (!File.ReadLines("/etc/passwd").Any(l => l.StartsWith("postgres:", StringComparison.Ordinal)))
        {
            missing.Add("the postgres user (created by Debian's postgresql package)");
        }

        if (FindOnPath("runuser") is null)
        {
            missing.Add("runuser on PATH (util-linux)");
        }

        Require(missing);
        return bin!;
    }

    private static void Require(List<string> missing)
    {
        if (missing.Count > 0)
        {
            Assert.Fail("this machine cannot run the real file-system tests; missing:\n  " + string.Join("\n  ", missing));
        }
    }

    public static string? FindOnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/sbin", "/sbin"])
            .Select(d => Path.Combine(d, tool))
            .FirstOrDefault(File.Exists);
}
