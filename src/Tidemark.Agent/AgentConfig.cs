using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Tidemark.Api;

namespace Tidemark.Agent;

/// <summary>
/// The agent's configuration, AGENTDIR/agent.json (written by `tidemark agent pair`, edited by people):
/// where it listens, how long a quiesce may last before it resumes by itself, which servers may call
/// it (pinned certificate fingerprints), and which local mount points sit on which Tidemark volumes.
/// </summary>
public sealed record AgentConfig
{
    public const string FileName = "agent.json";

    /// <summary>A few seconds: long enough for a group cut on a loaded server, short enough that an application never waits on a dead link for long.</summary>
    public const double DefaultDeadlineSeconds = 10;

    /// <summary>An application frozen for minutes is an outage, not a snapshot.</summary>
    public const double MaxDeadlineSeconds = 300;

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The host's name as the server will know it (default: the machine name).</summary>
    public string? Name { get; init; }

    public string Listen { get; init; } = "0.0.0.0:8420";

    public double DeadlineSeconds { get; init; } = DefaultDeadlineSeconds;

    public IReadOnlyList<AgentServerEntry> Servers { get; init; } = [];

    public IReadOnlyList<AgentMountEntry> Mounts { get; init; } = [];

    /// <summary>PostgreSQL clusters put in backup mode when their data directory is on a volume being cut.</summary>
    public IReadOnlyList<AgentPostgresEntry> Postgres { get; init; } = [];

    /// <summary>Mail stores (Postfix delivering into Dovecot) held and flushed when their mail root is on a volume being cut.</summary>
    public IReadOnlyList<AgentMailEntry> Mail { get; init; } = [];

    /// <summary>Pre/post hooks run around the cut of the volumes they name.</summary>
    public IReadOnlyList<AgentScriptEntry> Scripts { get; init; } = [];

    /// <summary>Where verifications make their work directories (mounts, overlays, a private PostgreSQL's sockets).</summary>
    public const string DefaultVerifyWorkRoot = "/run/tidemark-verify";

    /// <summary>
    /// The verification work root (default <see cref="DefaultVerifyWorkRoot"/>), not TMPDIR: a private
    /// PostgreSQL or Dovecot runs as the data's owner and must enter it, which a 0700 TMPDIR forbids.
    /// </summary>
    public string? VerifyWorkRoot { get; init; }

    public string HostName => string.IsNullOrEmpty(Name) ? Environment.MachineName : Name;

    /// <summary>The declared volume whose mount holds <paramref name="path"/> (the longest matching mount point), or null.</summary>
    public string? VolumeOf(string path) =>
        Mounts
            .Where(m => path == LocalMounts.Normalize(m.Path) || path.StartsWith(LocalMounts.Normalize(m.Path) + "/", StringComparison.Ordinal))
            .OrderByDescending(m => m.Path.Length)
            .FirstOrDefault()?.Volume;

    /// <summary>
    /// Each declared mail store with the volume under it and its root inside that volume's file
    /// system: a recovery mounts a view of the volume, where the store sits at that path, not at the
    /// host's mount path.
    /// </summary>
    public IReadOnlyList<AgentMailStoreDto> MailStoreLocations() => [.. Mail.Select(store =>
    {
        var root = LocalMounts.Normalize(store.MailRoot);
        var mount = Mounts
            .Where(m => root == LocalMounts.Normalize(m.Path) || root.StartsWith(LocalMounts.Normalize(m.Path) + "/", StringComparison.Ordinal))
            .OrderByDescending(m => m.Path.Length)
            .FirstOrDefault();
        var inVolume = mount is null ? root : "/" + Path.GetRelativePath(LocalMounts.Normalize(mount.Path), root);
        return new AgentMailStoreDto(store.Name, mount?.Volume, inVolume == "/." ? "/" : inVolume, store.Format);
    })];

    public static string PathIn(string directory) => Path.Combine(directory, FileName);

    public static AgentConfig Load(string directory)
    {
        var path = PathIn(directory);
        if (!File.Exists(path))
        {
            return new AgentConfig();
        }

        try
        {
            var config = JsonSerializer.Deserialize<AgentConfig>(File.ReadAllText(path), Json) ?? new AgentConfig();
            config.Validate(path);
            return config;
        }
        catch (JsonException ex)
        {
            throw new ArgumentException($"{path} is not a valid agent configuration ({ex.Message}); fix it or run 'tidemark agent pair' again", ex);
        }
    }

    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var path = PathIn(directory);
        var temp = path + ".tmp";
        File.WriteAllText(temp, JsonSerializer.Serialize(this, Json) + "\n", Encoding.UTF8);
        File.Move(temp, path, overwrite: true);
    }

    public void Validate(string where)
    {
        if (DeadlineSeconds is <= 0 or > MaxDeadlineSeconds || double.IsNaN(DeadlineSeconds))
        {
            throw new ArgumentException($"{where}: deadlineSeconds must be more than 0 and at most {MaxDeadlineSeconds}, not {DeadlineSeconds}");
        }

        _ = ParseListen(Listen, where);
        if (VerifyWorkRoot is not null && !Path.IsPathRooted(VerifyWorkRoot))
        {
            throw new ArgumentException($"{where}: verifyWorkRoot must be an absolute path, not '{VerifyWorkRoot}'");
        }

        foreach (var mount in Mounts)
        {
            if (!Path.IsPathRooted(mount.Path) || string.IsNullOrWhiteSpace(mount.Volume))
            {
                throw new ArgumentException($"{where}: a mount needs an absolute path and a volume name, not '{mount.Path}' = '{mount.Volume}'");
            }
        }

        foreach (var cluster in Postgres)
        {
            if (string.IsNullOrWhiteSpace(cluster.Name) || string.IsNullOrWhiteSpace(cluster.ConnectionString))
            {
                throw new ArgumentException($"{where}: a postgres entry needs a name and a connection string");
            }

            if (!AgentPostgresEntry.Modes.Contains(cluster.Mode))
            {
                throw new ArgumentException($"{where}: postgres {cluster.Name}: mode must be {string.Join(" or ", AgentPostgresEntry.Modes)}, not '{cluster.Mode}'");
            }
        }

        foreach (var mail in Mail)
        {
            if (string.IsNullOrWhiteSpace(mail.Name) || !Path.IsPathRooted(mail.MailRoot) || mail.Postfix is null && mail.Dovecot is null)
            {
                throw new ArgumentException($"{where}: a mail entry needs a name, the absolute path of its mail root (the directory with one home per user), and a Postfix config directory or a Dovecot config file");
            }

            if (mail.Format is not ("maildir" or "mdbox"))
            {
                throw new ArgumentException($"{where}: mail {mail.Name}: format must be maildir or mdbox, not '{mail.Format}'");
            }

            if (mail.IndexBeforeHoldSeconds is < 0 or > MaxDeadlineSeconds || double.IsNaN(mail.IndexBeforeHoldSeconds))
            {
                throw new ArgumentException($"{where}: mail {mail.Name}: indexBeforeHoldSeconds must be from 0 (no index run before the hold) to {MaxDeadlineSeconds}");
            }
        }

        foreach (var script in Scripts)
        {
            if (string.IsNullOrWhiteSpace(script.Name) || script.Volumes is not { Count: > 0 } || script.Pre is null && script.Post is null)
            {
                throw new ArgumentException($"{where}: a script entry needs a name, the volumes it covers, and a pre or post command");
            }

            if (script.TimeoutSeconds is <= 0 or > MaxDeadlineSeconds || double.IsNaN(script.TimeoutSeconds))
            {
                throw new ArgumentException($"{where}: script {script.Name}: timeoutSeconds must be more than 0 and at most {MaxDeadlineSeconds}");
            }
        }

        foreach (var server in Servers)
        {
            if (server.Fingerprint.Length != 64 || !server.Fingerprint.All(Uri.IsHexDigit))
            {
                throw new ArgumentException($"{where}: '{server.Fingerprint}' is not a certificate fingerprint (64 hex digits, from 'tidemark partner identity' on the server)");
            }
        }
    }

    public static System.Net.IPEndPoint ParseListen(string value, string where) =>
        System.Net.IPEndPoint.TryParse(value, out var endpoint) && value.Contains(':', StringComparison.Ordinal)
            ? endpoint
            : throw new ArgumentException($"{where}: listen must be ADDRESS:PORT (e.g. 0.0.0.0:8420), not '{value}'");
}

/// <summary>A server allowed to call this agent, pinned by the SHA-256 fingerprint of its identity certificate.</summary>
public sealed record AgentServerEntry(string Fingerprint, DateTimeOffset PairedAt);

/// <summary>
/// A PostgreSQL cluster: an Npgsql connection string (e.g. "Host=/run/postgresql;Username=postgres")
/// for a role that may run pg_backup_start; its data directory is asked from the server when not given.
/// <see cref="Mode"/>: <see cref="BackupMode"/> (default) puts the cluster in backup mode around the
/// cut (a forced checkpoint per snapshot); <see cref="AtomicCutMode"/> only makes sure that the data
/// directory, its WAL and every tablespace are in the same atomic cut, the file-system snapshot that
/// PostgreSQL's documentation calls a valid backup (a view starts by crash recovery), without the
/// checkpoint (ADR 0015).
/// </summary>
public sealed record AgentPostgresEntry(string Name, string ConnectionString, string? DataDirectory = null, string Mode = AgentPostgresEntry.BackupMode)
{
    public const string BackupMode = "backup";
    public const string AtomicCutMode = "atomic-cut";

    public static readonly IReadOnlyList<string> Modes = [BackupMode, AtomicCutMode];
}

/// <summary>
/// A pre/post hook pair: shell commands run (as the agent's user) when one of <see cref="Volumes"/>
/// is cut; <see cref="TimeoutSeconds"/> bounds each. TIDEMARK_PHASE (pre/post) and TIDEMARK_VOLUMES
/// are in their environment.
/// </summary>
public sealed record AgentScriptEntry(string Name, IReadOnlyList<string> Volumes, string? Pre = null, string? Post = null, double TimeoutSeconds = 30);

/// <summary>
/// A mail store: <see cref="MailRoot"/> holds one home per user (MAILROOT/USER/Maildir or /mdbox);
/// <see cref="Postfix"/> is the config directory of the Postfix that delivers into it ("/etc/postfix"),
/// <see cref="Dovecot"/> the dovecot.conf of the Dovecot that serves it; either may be absent.
/// <see cref="Transports"/> overrides the Postfix transports held (default: those of
/// virtual_transport, mailbox_transport and local_transport). <see cref="IndexBeforeHoldSeconds"/>
/// bounds the `doveadm index` run before the hold (0: none).
/// </summary>
public sealed record AgentMailEntry(string Name, string MailRoot, string? Postfix = null, string? Dovecot = null, string Format = "maildir", IReadOnlyList<string>? Transports = null, double IndexBeforeHoldSeconds = AgentMailEntry.DefaultIndexBeforeHoldSeconds)
{
    public const string DefaultName = "mail";

    /// <summary>Indexing what arrived since the last snapshot takes well under a second on an idle host; 5 s leaves room for a loaded one.</summary>
    public const double DefaultIndexBeforeHoldSeconds = 5;
}

/// <summary>A mount point and the Tidemark volume under it.</summary>
public sealed record AgentMountEntry(string Path, string Volume);
