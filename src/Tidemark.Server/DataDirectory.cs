using System.Security.Cryptography;

namespace Tidemark.Server;

/// <summary>
/// The layout of a data directory: DATA/pool (the engine's pool; its metadata also holds exports, tokens, snapshot and autogrow policies, jobs, partners and replica state: ADR 0011), DATA/token (API token, mode 0600),
/// DATA/tidemark.json (config), DATA/events.jsonl (event and audit log; refused requests in DATA/events-refused.jsonl), DATA/identity (this server's replication certificate), DATA/server.json (endpoints of the running server).
/// </summary>
public sealed partial class DataDirectory
{
    public const string DefaultPath = "tidemark-data";

    public DataDirectory(string path)
    {
        Root = Path.GetFullPath(path);
    }

    public string Root { get; }

    public string PoolPath => Path.Combine(Root, "pool");

    public string TokenPath => Path.Combine(Root, "token");

    /// <summary>Named tokens of older versions (now in the pool), imported once at start.</summary>
    public string TokensPath => Path.Combine(Root, "tokens.json");

    public string ConfigPath => Path.Combine(Root, "tidemark.json");

    /// <summary>Exports of older versions (now in the pool), imported once at start.</summary>
    public string ExportsPath => Path.Combine(Root, "exports.json");

    /// <summary>Autogrow policies of older versions (now in the pool), imported once at start.</summary>
    public string CapacityPath => Path.Combine(Root, "capacity.json");

    /// <summary>Snapshot policies of older versions (now in the pool), imported once at start.</summary>
    public string PoliciesPath => Path.Combine(Root, "policies.json");

    /// <summary>Replicas promoted here, of older versions (now in the pool), imported once at start.</summary>
    public string PromotedPath => Path.Combine(Root, "promoted.json");

    /// <summary>Volumes replicated to partners, of older versions (now in the pool), imported once at start.</summary>
    public string ReplicasPath => Path.Combine(Root, "replicas.json");

    /// <summary>Volumes replicated into this server, of older versions (now in the pool), imported once at start.</summary>
    public string IncomingPath => Path.Combine(Root, "incoming.json");

    /// <summary>Resume offsets of interrupted incoming transfers, of older versions (now in the pool), imported once at start.</summary>
    public string ReceivingPath => Path.Combine(Root, "receiving.json");

    /// <summary>Standby exports of incoming replicas, of older versions (now in the pool), imported once at start.</summary>
    public string StandbyPath => Path.Combine(Root, "standby.json");

    /// <summary>Paired servers of older versions (now in the pool), imported once at start.</summary>
    public string PartnersPath => Path.Combine(Root, "partners.json");

    public string IdentityPath => Path.Combine(Root, "identity");

    public string EventsPath => Path.Combine(Root, "events.jsonl");

    public string RuntimePath => Path.Combine(Root, "server.json");

    public string LockPath => Path.Combine(Root, "lock");

    /// <summary>
    /// Takes the data directory for this process (an exclusive lock on DATA/lock, released when the
    /// process ends, also by kill -9): two servers on one pool would corrupt nothing, since RocksDB
    /// refuses too, but this says plainly what is wrong.
    /// </summary>
    public FileStream Lock()
    {
        try
        {
            return new FileStream(LockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex)
        {
            throw new IOException($"another tidemark serve is using {Root} (see {RuntimePath} for its process id); stop it first or choose another --data", ex);
        }
    }

    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>
    /// Files this process creates from now on are the owner's only (umask 077): RocksDB and the store
    /// files would otherwise be 0644, and any local user could read every volume.
    /// </summary>
    public static void RestrictNewFiles()
    {
        if (OperatingSystem.IsLinux())
        {
            _ = Umask(0b000_111_111); // returns the previous mask, which is of no use here
        }
    }

    /// <summary>
    /// Takes group and other permissions away from the data directory, everything under it, and the
    /// store files (which may live elsewhere): 0700 for directories, 0600 for files. Returns what it
    /// changed, for the caller to warn about. Symbolic links are not followed.
    /// </summary>
    public IReadOnlyList<string> RestrictPermissions(IEnumerable<string> alsoFiles)
    {
        var fixedPaths = new List<string>();
        if (OperatingSystem.IsWindows())
        {
            return fixedPaths;
        }

        void Restrict(string path)
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & ~OwnerOnly) != 0)
            {
                File.SetUnixFileMode(path, mode & OwnerOnly);
                fixedPaths.Add($"{path} ({Octal(mode)} -> {Octal(mode & OwnerOnly)})");
            }
        }

        Restrict(Root);
        var options = new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true, AttributesToSkip = FileAttributes.ReparsePoint };
        foreach (var entry in new DirectoryInfo(Root).EnumerateFileSystemInfos("*", options))
        {
            Restrict(entry.FullName);
        }

        foreach (var file in alsoFiles.Where(f => File.Exists(f) && !f.StartsWith("/dev/", StringComparison.Ordinal)))
        {
            Restrict(file);
        }

        return fixedPaths;
    }

    private static string Octal(UnixFileMode mode) => Convert.ToString((int)mode, 8).PadLeft(4, '0');

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "umask")]
    private static partial uint Umask(uint mask);

    /// <summary>Reads the API token, creating a random one (32 bytes, hex) readable only by the owner on first start.</summary>
    public string EnsureToken()
    {
        if (File.Exists(TokenPath))
        {
            var existing = File.ReadAllText(TokenPath).Trim();
            if (existing.Length >= 32)
            {
                return existing;
            }

            throw new InvalidDataException($"{TokenPath} does not hold a token; delete it and restart to generate a new one");
        }

        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        AtomicFile.WriteAllText(TokenPath, token + "\n", UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return token;
    }
}
