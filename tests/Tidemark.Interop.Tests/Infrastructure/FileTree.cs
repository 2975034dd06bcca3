using System.Security.Cryptography;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>Trees of files with random content, described by their SHA-256 per relative path.</summary>
internal static class FileTree
{
    /// <summary>
    /// Writes <paramref name="files"/> files spread over nested directories: mostly small (1-64 KiB,
    /// odd sizes so that tails of blocks matter), every 25th one 1-2 MiB so that extents span many blocks.
    /// </summary>
    public static SortedDictionary<string, string> WriteRandom(string root, int files, int seed)
    {
        var random = new Random(seed);
        for (var i = 0; i < files; i++)
        {
            var relative = Path.Combine($"dir{i % 8}", $"sub{i % 3}", $"file{i:D4}.bin");
            var size = i % 25 == 0 ? random.Next(1 << 20, 2 << 20) : random.Next(1 << 10, 64 << 10);
            WriteRandomFile(Path.Combine(root, relative), size, random);
        }

        return Hash(root);
    }

    public static void WriteRandomFile(string path, int size, Random random)
    {
        var content = new byte[size];
        random.NextBytes(content);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, content);
    }

    /// <summary>Every regular file under <paramref name="root"/> (lost+found excluded) and its SHA-256.</summary>
    public static SortedDictionary<string, string> Hash(string root)
    {
        var hashes = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(root, file);
            if (!relative.StartsWith("lost+found", StringComparison.Ordinal))
            {
                using var stream = File.OpenRead(file);
                hashes[relative] = Convert.ToHexString(SHA256.HashData(stream));
            }
        }

        return hashes;
    }
}
