using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tidemark.Server;

/// <summary>
/// Every setting of `tidemark serve`, as kept in the config file (DATA/tidemark.json). Sizes are
/// written as administrators type them (64M, 10G) so the file is easy to edit by hand. Flags
/// override the file; the file is written once, on first start, with the settings in force then.
/// </summary>
public sealed record ServerSettings
{
    public const string DefaultHttp = "127.0.0.1:8410";
    public const string DefaultNbd = "127.0.0.1:10809";
    public const string DefaultIscsi = "127.0.0.1:3260";
    public const string DefaultMapCache = "32M";
    public const string DefaultMetadataCache = "24M";
    public const string DefaultReplication = "127.0.0.1:8411";

    /// <summary>sun_path holds 108 bytes with the terminating zero.</summary>
    public const int MaxUnixSocketPathBytes = 107;

    /// <summary>HTTP API address, HOST:PORT (port 0: any free port). Keep it on loopback unless behind TLS.</summary>
    public string Http { get; init; } = DefaultHttp;

    /// <summary>NBD listener address, HOST:PORT, or "off".</summary>
    public string Nbd { get; init; } = DefaultNbd;

    /// <summary>
    /// A Unix-domain socket for NBD clients on this host (QEMU, nbdcopy: nbd+unix:///NAME?socket=PATH),
    /// mode 0600, or null / "off". A relative path is under the data directory.
    /// </summary>
    public string? NbdSocket { get; init; }

    /// <summary>iSCSI listener address (the portal), HOST:PORT, or "off".</summary>
    public string Iscsi { get; init; } = DefaultIscsi;

    /// <summary>Replication listener (partners only, mutual TLS 1.3), HOST:PORT, or "off".</summary>
    public string Replication { get; init; } = DefaultReplication;

    /// <summary>First wait before retrying a broken replication transfer ("500ms", "1s", "2m"); it doubles per attempt.</summary>
    public string ReplicationRetryDelay { get; init; } = "1s";

    /// <summary>
    /// How long an NBD or iSCSI connection keeps asking for its next request before its thread sleeps
    /// ("50us", "off"): a request arriving meanwhile is served without a thread wake-up, which halves
    /// latency at queue depth 1, at the cost of CPU while a client is active. A large WRITE's payload
    /// that arrives piece by piece is waited for the same way.
    /// </summary>
    public string ReceivePoll { get; init; } = "50us";

    /// <summary>How long an NBD or iSCSI client may take from connecting to the end of its handshake or login ("10s"); closed then.</summary>
    public string HandshakeTimeout { get; init; } = "10s";

    /// <summary>How long a connected NBD or iSCSI client may send nothing before it is closed ("8h"), or "off" (the default: see docs/adr/0006-connection-limits.md).</summary>
    public string IdleTimeout { get; init; } = "off";

    /// <summary>How long an NBD or iSCSI client may leave its replies unread before it is closed ("60s"), or "off".</summary>
    public string SendTimeout { get; init; } = "60s";

    /// <summary>NBD connections, and separately iSCSI connections, open at once; more are refused.</summary>
    public int MaxConnections { get; init; } = ConnectionLimits.DefaultMaxConnections;

    /// <summary>NBD connections, and separately iSCSI connections, open at once from one IP address; more are refused.</summary>
    public int MaxConnectionsPerSource { get; init; } = ConnectionLimits.DefaultMaxConnectionsPerSource;

    /// <summary>Capacity of the pool's first file store when the pool is created: a size, or "auto" (the free space of the file system).</summary>
    public string StoreCapacity { get; init; } = "auto";

    /// <summary>Path of the pool's first store (a file or a block device) when the pool is created; default DATA/pool/store-0.dat.</summary>
    public string? StorePath { get; init; }

    /// <summary>Memory for cached volume map pages (with the metadata cache sized so a 20 GiB volume is served in <= 256 MiB: docs/BENCHMARKS.md, memory of tidemark serve).</summary>
    public string MapCache { get; init; } = DefaultMapCache;

    /// <summary>Memory for the metadata store's block cache.</summary>
    public string MetadataCache { get; init; } = DefaultMetadataCache;

    /// <summary>TLS for the API: null or "off" (plain HTTP: keep it on loopback), "self-signed" (made on first start, in DATA/tls), or a PEM certificate file.</summary>
    public string? TlsCertificate { get; init; }

    /// <summary>The PEM private key of <see cref="TlsCertificate"/> when that is a file.</summary>
    public string? TlsKey { get; init; }

    /// <summary>Log level: Trace, Debug, Information, Warning, Error.</summary>
    public string LogLevel { get; init; } = "Information";

    /// <summary>The dashboard's alert for a running job whose progress has not moved for this long (config file only).</summary>
    public string AlertStalledJob { get; init; } = "10m";

    /// <summary>
    /// The recovery point objective a replica without a sync interval is held to: its lag beyond this
    /// is an alert (one with an interval is held to twice its interval: one missed sync). Config file only.
    /// </summary>
    public string AlertRpo { get; init; } = "1h";

    internal static JsonSerializerOptions FileJson { get; } = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    public static ServerSettings Load(string path)
    {
        try
        {
            return JsonSerializer.Deserialize<ServerSettings>(File.ReadAllText(path), FileJson)
                ?? throw new InvalidDataException($"{path} is empty");
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path} is not a valid Tidemark config file ({ex.Message}); fix it or delete it to start over with defaults", ex);
        }
    }

    public void Save(string path) => AtomicFile.WriteAllText(path, JsonSerializer.Serialize(this, FileJson) + "\n");

    /// <summary>Checks every value and says which one is wrong and how to write it.</summary>
    public void Validate()
    {
        ParseEndpoint(Http, "http");
        if (!NbdDisabled)
        {
            ParseEndpoint(Nbd, "nbd");
        }

        if (!NbdSocketDisabled && Encoding.UTF8.GetByteCount(NbdSocket!) > MaxUnixSocketPathBytes)
        {
            throw new ArgumentException($"nbd-socket '{NbdSocket}' is longer than the {MaxUnixSocketPathBytes} bytes a Unix socket path may have; choose a shorter path");
        }

        if (!IscsiDisabled)
        {
            ParseEndpoint(Iscsi, "iscsi");
        }

        if (!ReplicationDisabled)
        {
            ParseEndpoint(Replication, "replication");
        }

        Duration(ReplicationRetryDelay, "replication-retry-delay");
        Duration(AlertStalledJob, "alert-stalled-job", Alerts.AlertSettings.MaxSpan);
        Duration(AlertRpo, "alert-rpo", Alerts.AlertSettings.MaxSpan);
        _ = ReceivePollDuration;
        _ = ToConnectionLimits();
        if (!string.Equals(StoreCapacity, "auto", StringComparison.OrdinalIgnoreCase))
        {
            Size(StoreCapacity, "store-capacity");
        }

        if (!TlsDisabled && !string.Equals(TlsCertificate, TlsCertificates.SelfSigned, StringComparison.OrdinalIgnoreCase))
        {
            if (!File.Exists(TlsCertificate))
            {
                throw new ArgumentException($"tls-cert '{TlsCertificate}' does not exist; give a PEM certificate file, self-signed, or off");
            }

            if (TlsKey is null || !File.Exists(TlsKey))
            {
                throw new ArgumentException($"tls-key '{TlsKey}' does not exist; a certificate file needs its PEM private key (--tls-key)");
            }
        }

        Size(MapCache, "map-cache");
        Size(MetadataCache, "metadata-cache");
        if (!Enum.TryParse<Microsoft.Extensions.Logging.LogLevel>(LogLevel, ignoreCase: true, out _))
        {
            throw new ArgumentException($"log-level '{LogLevel}' is not one of Trace, Debug, Information, Warning, Error, Critical, None");
        }
    }

    [JsonIgnore]
    public bool TlsDisabled => string.IsNullOrWhiteSpace(TlsCertificate) || string.Equals(TlsCertificate, "off", StringComparison.OrdinalIgnoreCase);

    [JsonIgnore]
    public bool ReplicationDisabled => string.Equals(Replication, "off", StringComparison.OrdinalIgnoreCase) || string.IsNullOrWhiteSpace(Replication);

    [JsonIgnore]
    public bool NbdDisabled => string.Equals(Nbd, "off", StringComparison.OrdinalIgnoreCase) || string.IsNullOrWhiteSpace(Nbd);

    [JsonIgnore]
    public bool NbdSocketDisabled => NbdDisabled || string.IsNullOrWhiteSpace(NbdSocket) || string.Equals(NbdSocket, "off", StringComparison.OrdinalIgnoreCase);

    [JsonIgnore]
    public bool IscsiDisabled => string.Equals(Iscsi, "off", StringComparison.OrdinalIgnoreCase) || string.IsNullOrWhiteSpace(Iscsi);

    /// <summary>The caps and deadlines of the NBD and iSCSI listeners; throws with the setting to fix when one is out of range.</summary>
    public ConnectionLimits ToConnectionLimits()
    {
        var handshake = Duration(HandshakeTimeout, "handshake-timeout");
        if (handshake <= TimeSpan.Zero || handshake > TimeSpan.FromHours(1))
        {
            throw new ArgumentException($"handshake-timeout '{HandshakeTimeout}' is out of range; write a duration from 1s to 1h, such as 10s");
        }

        var idle = string.Equals(IdleTimeout, "off", StringComparison.OrdinalIgnoreCase) || IdleTimeout.Trim() == "0"
            ? TimeSpan.Zero
            : Duration(IdleTimeout, "idle-timeout");
        if (idle != TimeSpan.Zero && (idle < TimeSpan.FromSeconds(1) || idle.TotalMilliseconds > int.MaxValue))
        {
            throw new ArgumentException($"idle-timeout '{IdleTimeout}' is out of range; write a duration from 1s to 24h, such as 8h, or off");
        }

        var send = string.Equals(SendTimeout, "off", StringComparison.OrdinalIgnoreCase) || SendTimeout.Trim() == "0"
            ? TimeSpan.Zero
            : Duration(SendTimeout, "send-timeout");
        if (send != TimeSpan.Zero && (send < TimeSpan.FromSeconds(1) || send > TimeSpan.FromHours(24)))
        {
            throw new ArgumentException($"send-timeout '{SendTimeout}' is out of range; write a duration from 1s to 24h, such as 60s, or off");
        }

        if (MaxConnections is < 1 or > 1_000_000)
        {
            throw new ArgumentException($"max-connections {MaxConnections} is out of range; write 1 to 1000000 (default {ConnectionLimits.DefaultMaxConnections})");
        }

        if (MaxConnectionsPerSource is < 1 or > 1_000_000)
        {
            throw new ArgumentException($"max-connections-per-source {MaxConnectionsPerSource} is out of range; write 1 to 1000000 (default {ConnectionLimits.DefaultMaxConnectionsPerSource})");
        }

        return new ConnectionLimits
        {
            HandshakeTimeout = handshake,
            IdleTimeout = idle,
            SendTimeout = send,
            MaxConnections = MaxConnections,
            MaxConnectionsPerSource = MaxConnectionsPerSource,
        };
    }

    /// <summary><see cref="ReceivePoll"/> as a duration; zero when off. At most 10 ms (it burns CPU).</summary>
    [JsonIgnore]
    public TimeSpan ReceivePollDuration
    {
        get
        {
            if (string.Equals(ReceivePoll, "off", StringComparison.OrdinalIgnoreCase) || ReceivePoll.Trim() == "0")
            {
                return TimeSpan.Zero;
            }

            var poll = Duration(ReceivePoll, "receive-poll");
            return poll <= TimeSpan.FromMilliseconds(10)
                ? poll
                : throw new ArgumentException($"receive-poll '{ReceivePoll}' is too long: it spins a core while waiting; write 0 to 10ms, such as 50us, or off");
        }
    }

    public static IPEndPoint ParseEndpoint(string text, string setting) => SettingText.ParseEndpoint(text, setting);

    /// <summary>"50us", "250ms", "1s", "2m", "1h" or "2d", at most a day unless <paramref name="max"/> says otherwise.</summary>
    public static TimeSpan Duration(string text, string setting, TimeSpan? max = null) => SettingText.Duration(text, setting, max);

    public static long Size(string text, string setting) =>
        ByteSize.TryParse(text, out var bytes)
            ? bytes
            : throw new ArgumentException($"{setting} '{text}' is not a size; write it like 10G, 512M or 4096");
}
