namespace Tidemark.TestKit;

/// <summary>What /proc/self/mountinfo says is mounted (field 5 is the mount point, octal-escaped).</summary>
public static class MountTable
{
    public static bool IsMounted(string path) => MountPoints().Contains(Path.TrimEndingDirectorySeparator(path));

    public static bool AnyMountedUnder(string directory)
    {
        var prefix = Path.TrimEndingDirectorySeparator(directory) + "/";
        return MountPoints().Any(m => m.StartsWith(prefix, StringComparison.Ordinal));
    }

    private static HashSet<string> MountPoints()
    {
        var points = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            var fields = line.Split(' ');
            if (fields.Length > 4)
            {
                points.Add(fields[4].Replace("\\040", " ", StringComparison.Ordinal));
            }
        }

        return points;
    }
}
