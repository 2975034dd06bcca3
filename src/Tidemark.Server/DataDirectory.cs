using System.Security.Cryptography;

namespace Tidemark.Server;

/// <summary>
/// The layout of a data directory: DATA/pool (the engine's pool), DATA/token (API token, mode 0600),
/// DATA/tidemark.json (config), DATA/exports.json (exports), DATA/events.jsonl (event and audit log), DATA/capacity.json (autogrow policies), DATA/policies.json (snapshot policies and what they own), DATA/identity (this server's replication certificate), DATA/partners.json (paired servers), DATA/replicas.json (volumes replicated to partners), DATA/promoted.json (replicas promoted here), DATA/server.json (endpoints of the running server).
/// </summary>
public sealed class DataDirectory
{
    public const string DefaultPath = "tidemark-data";

    public DataDirectory(string path)
    {
        Root = Path.GetFullPath(path);
    }

    public string Root { get; }

    public string PoolPath => Path.Combine(Root, "pool");

    public string TokenPath => Path.Combine(Root, "token");

    /// <summary>Named tokens with roles, hashed (the first is DATA/token's, named "admin").</summary>
    public string TokensPath => Path.Combine(Root, "tokens.json");

    public string ConfigPath => Path.Combine(Root, "tidemark.json");

    public string ExportsPath => Path.Combine(Root, "exports.json");

    public string CapacityPath => Path.Combine(Root, "capacity.json");

    public string PoliciesPath => Path.Combine(Root, "policies.json");

    public string PromotedPath => Path.Combine(Root, "promoted.json");

    public string ReplicasPath => Path.Combine(Root, "replicas.json");

    /// <summary>Volumes replicated into this server and who sends them.</summary>
    public string IncomingPath => Path.Combine(Root, "incoming.json");

    /// <summary>How far interrupted incoming transfers durably got (so they resume, also after a restart).</summary>
    public string ReceivingPath => Path.Combine(Root, "receiving.json");

    /// <summary>Exports prepared for incoming replicas, brought up when they are promoted.</summary>
    public string StandbyPath => Path.Combine(Root, "standby.json");

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
