using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Protocols.Iscsi;
using Tidemark.Protocols.Nbd;
using Tidemark.Server.Agents;
using Tidemark.Server.Api;
using Tidemark.Server.Capacity;
using Tidemark.Server.Events;
using Tidemark.Server.Jobs;
using Tidemark.Server.Metrics;
using Tidemark.Server.Policies;
using Tidemark.Server.Replication;
using Tidemark.Server.WebConsole;

namespace Tidemark.Server;

/// <summary>What `tidemark serve` was given: the data directory, an optional config file, and flags that override it.</summary>
public sealed record ServeOptions
{
    public string DataDirectory { get; init; } = Server.DataDirectory.DefaultPath;

    /// <summary>Config file; default DATA/tidemark.json. Created with the settings in force when missing.</summary>
    public string? ConfigPath { get; init; }

    public string? Http { get; init; }

    public string? Nbd { get; init; }

    public string? Iscsi { get; init; }

    public string? StoreCapacity { get; init; }

    public string? StorePath { get; init; }

    public string? MapCache { get; init; }

    public string? MetadataCache { get; init; }

    public string? LogLevel { get; init; }

    public string? TlsCertificate { get; init; }

    public string? TlsKey { get; init; }

    public string? Replication { get; init; }

    public string? ReplicationRetryDelay { get; init; }

    public string? NbdSocket { get; init; }

    public string? ReceivePoll { get; init; }

    public string? HandshakeTimeout { get; init; }

    public string? IdleTimeout { get; init; }

    public string? SendTimeout { get; init; }

    public int? MaxConnections { get; init; }

    public int? MaxConnectionsPerSource { get; init; }

}

/// <summary>
/// The appliance in one process: opens (or on first start creates) the pool, then hosts the REST API
/// (Kestrel), the NBD listener and the iSCSI portal. Stopping (Ctrl-C, SIGTERM) ends the listeners first and then
/// flushes and closes the pool, so everything acknowledged is on disk.
/// </summary>
public sealed partial class TidemarkServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Pool _pool;
    private readonly DataDirectory _data;
    private readonly ILogger _logger;
    private readonly FileStream _lock;
    private bool _disposed;

    private TidemarkServer(WebApplication app, Pool pool, DataDirectory data, FileStream dataLock, ServerSettings settings, ILogger logger)
    {
        _lock = dataLock;
        _app = app;
        _pool = pool;
        _data = data;
        Settings = settings;
        _logger = logger;
    }

    public ServerSettings Settings { get; }

    public Pool Pool => _pool;

    public EventLog Events => _app.Services.GetRequiredService<EventLog>();

    /// <summary>The HTTP base address actually bound ("http://127.0.0.1:8410/"), known after start.</summary>
    public Uri? HttpAddress { get; private set; }

    public IPEndPoint? NbdEndpoint { get; private set; }

    public IPEndPoint? IscsiEndpoint { get; private set; }

    public IPEndPoint? ReplicationEndpoint { get; private set; }

    /// <summary>The NBD Unix-domain socket, or null when there is none.</summary>
    public string? NbdSocket { get; private set; }

    public string Token { get; private set; } = string.Empty;

    /// <summary>SHA-256 of the API's TLS certificate (null without TLS), published in server.json for clients to pin.</summary>
    public string? TlsFingerprint { get; private set; }

    /// <summary>Merges the config file and the flags, writes the config on first start, and checks every value.</summary>
    public static ServerSettings ResolveSettings(ServeOptions options, DataDirectory data)
    {
        var configPath = options.ConfigPath ?? data.ConfigPath;
        var fromFile = File.Exists(configPath) ? ServerSettings.Load(configPath) : new ServerSettings();
        var settings = fromFile with
        {
            Http = options.Http ?? fromFile.Http,
            Nbd = options.Nbd ?? fromFile.Nbd,
            NbdSocket = options.NbdSocket ?? fromFile.NbdSocket,
            ReceivePoll = options.ReceivePoll ?? fromFile.ReceivePoll,
            HandshakeTimeout = options.HandshakeTimeout ?? fromFile.HandshakeTimeout,
            IdleTimeout = options.IdleTimeout ?? fromFile.IdleTimeout,
            SendTimeout = options.SendTimeout ?? fromFile.SendTimeout,
            MaxConnections = options.MaxConnections ?? fromFile.MaxConnections,
            MaxConnectionsPerSource = options.MaxConnectionsPerSource ?? fromFile.MaxConnectionsPerSource,
            Iscsi = options.Iscsi ?? fromFile.Iscsi,
            StoreCapacity = options.StoreCapacity ?? fromFile.StoreCapacity,
            StorePath = options.StorePath ?? fromFile.StorePath,
            MapCache = options.MapCache ?? fromFile.MapCache,
            MetadataCache = options.MetadataCache ?? fromFile.MetadataCache,
            LogLevel = options.LogLevel ?? fromFile.LogLevel,
            TlsCertificate = options.TlsCertificate ?? fromFile.TlsCertificate,
            TlsKey = options.TlsKey ?? fromFile.TlsKey,
            Replication = options.Replication ?? fromFile.Replication,
            ReplicationRetryDelay = options.ReplicationRetryDelay ?? fromFile.ReplicationRetryDelay,
        };
        settings.Validate();
        if (!File.Exists(configPath))
        {
            settings.Save(configPath);
        }

        return settings;
    }

    /// <summary>Opens everything and binds the listeners; throws with an actionable message when it cannot.</summary>
    public static async Task<TidemarkServer> StartAsync(ServeOptions options, CancellationToken cancellationToken = default)
    {
        var data = new DataDirectory(options.DataDirectory);
        DataDirectory.RestrictNewFiles();
        Directory.CreateDirectory(data.Root);
        var dataLock = data.Lock();
        try
        {
            return await StartLockedAsync(options, data, dataLock, cancellationToken);
        }
        catch
        {
            await dataLock.DisposeAsync();
            throw;
        }
    }

    private static async Task<TidemarkServer> StartLockedAsync(ServeOptions options, DataDirectory data, FileStream dataLock, CancellationToken cancellationToken)
    {
        var settings = ResolveSettings(options, data);
        var token = data.EnsureToken();
        var builder = CreateBuilder(settings);
        var certificate = TlsCertificates.Load(settings, data);
        var identity = ServerIdentity.LoadOrCreate(data.IdentityPath);
        var listeners = ConfigureListeners(builder, settings, certificate, identity);
        AddHostServices(builder.Services, identity);

        // The pool opens before anything can reach it and closes after every listener stopped.
        var pool = OpenPool(data, settings);
        WebApplication? app = null;
        try
        {
            AddCoreServices(builder.Services, pool, data, token);
            AddAgentServices(builder.Services, pool, data, identity);
            AddReplicationServices(builder.Services, pool, data, settings, identity);
            AddProtocolServices(builder.Services, pool, data, settings, certificate);
            builder.Services.AddConsole(settings);
            builder.Services.AddSingleton<IMetricsSource>(sp => new ListenerMetrics([sp.GetService<NbdListener>(), sp.GetService<IscsiListener>()]));
            app = builder.Build();
            var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark");
            var registry = app.Services.GetRequiredService<ExportRegistry>();
            ConfigurePipeline(app, data, pool, logger);

            var server = new TidemarkServer(app, pool, data, dataLock, settings, logger)
            {
                Token = token,
                TlsFingerprint = certificate is null ? null : TlsCertificates.Fingerprint(certificate),
            };
            await server.StartCoreAsync(registry, listeners.Api!, listeners.Replication, cancellationToken);
            return server;
        }
        catch
        {
            if (app is not null)
            {
                await app.StopAsync(CancellationToken.None);
                await app.DisposeAsync();
            }

            pool.Dispose();
            throw;
        }
    }

    private async Task StartCoreAsync(ExportRegistry registry, ListenOptions api, ListenOptions? replication, CancellationToken cancellationToken)
    {
        registry.WhyReadOnly = _app.Services.GetRequiredService<ReplicaReceiver>().WhyReadOnly;
        registry.StandbyImageOf = _app.Services.GetRequiredService<ReplicaReceiver>().StandbyImage;
        foreach (var (export, message) in registry.Load())
        {
            Events.Record("export.read-only", export, "server", message, "refused");
        }

        // Before the policies start: a view a killed server left mid-verification, mid-index or
        // mid-recovery goes, with an event (no job of the previous process runs any more).
        _app.Services.GetRequiredService<SnapshotVerifier>().DeleteLeftoverViews();
        _app.Services.GetRequiredService<MailIndexer>().DeleteLeftoverViews();
        _app.Services.GetRequiredService<RecoveryViews>().DeleteLeftovers();
        // The instruments exist from the start, so the exporter has them all at its first collection.
        _app.Services.GetRequiredService<ServerMeter>();
        _app.Services.GetRequiredService<ReplicaInstruments>();
        await _app.StartAsync(cancellationToken);
        // Kestrel puts the bound port (also for port 0) back into each listener's options.
        HttpAddress = new Uri($"{(TlsFingerprint is null ? "http" : "https")}://{api.IPEndPoint}/");
        ReplicationEndpoint = replication?.IPEndPoint;
        _app.Services.GetRequiredService<ReplicationEndpoint>().Address = ReplicationEndpoint?.ToString();
        NbdEndpoint = _app.Services.GetService<NbdListener>()?.LocalEndpoint;
        registry.NbdAddress = NbdEndpoint?.ToString();
        NbdSocket = _app.Services.GetService<NbdListener>()?.UnixSocketPath;
        registry.NbdSocket = NbdSocket;
        IscsiEndpoint = _app.Services.GetService<IscsiListener>()?.LocalEndpoint;
        registry.IscsiAddress = IscsiEndpoint?.ToString();
        var endpoints = new ServerEndpointsDto(Environment.ProcessId, HttpAddress.ToString(), NbdEndpoint?.ToString(), DateTimeOffset.UtcNow, IscsiEndpoint?.ToString(), TlsFingerprint, ReplicationEndpoint?.ToString(), NbdSocket);
        if (TlsFingerprint is null && !System.Net.IPAddress.IsLoopback(ServerSettings.ParseEndpoint(Settings.Http, "http").Address))
        {
            ServerLog.ApiWithoutTls(_logger, HttpAddress);
        }

        AtomicFile.WriteAllText(_data.RuntimePath, JsonSerializer.Serialize(endpoints, ServerSettings.FileJson) + "\n");
        Events.Record("server.start", null, "server", $"serving pool {_pool.Id}: API {HttpAddress}, NBD {NbdEndpoint?.ToString() ?? "off"}, iSCSI {IscsiEndpoint?.ToString() ?? "off"}, replication {ReplicationEndpoint?.ToString() ?? "off"}");
        ServerLog.Serving(
            _logger,
            _pool.Id,
            _data.Root,
            HttpAddress,
            _data.TokenPath,
            NbdEndpoint?.ToString() ?? "off",
            IscsiEndpoint?.ToString() ?? "off");
    }

    private static Pool OpenPool(DataDirectory data, ServerSettings settings)
    {
        var options = new PoolOptions
        {
            MapCacheBytes = ServerSettings.Size(settings.MapCache, "map-cache"),
            MetadataCacheBytes = ServerSettings.Size(settings.MetadataCache, "metadata-cache"),
            FirstStorePath = settings.StorePath,
            FirstStoreCapacityBytes = string.Equals(settings.StoreCapacity, "auto", StringComparison.OrdinalIgnoreCase)
                ? null
                : ServerSettings.Size(settings.StoreCapacity, "store-capacity"),
        };
        return Directory.Exists(Path.Combine(data.PoolPath, "meta"))
            ? Pool.Open(data.PoolPath, options)
            : Pool.Create(data.PoolPath, options);
    }

    /// <summary>Runs until Ctrl-C / SIGTERM or <paramref name="cancellationToken"/>, then stops cleanly.</summary>
    public async Task WaitForShutdownAsync(CancellationToken cancellationToken = default)
    {
        await _app.WaitForShutdownAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        var events = Events;
        try
        {
            // Recoveries that answered before their view was deleted delete it first (docs/adr/0012);
            // index builds in flight are cancelled and delete theirs. Bounded: a view that outlives
            // the wait is deleted at the next start.
            var recoveries = _app.Services.GetRequiredService<MailRecoveryRunner>().WhenCleanedUpAsync();
            var indexes = _app.Services.GetRequiredService<MailIndexer>().StopAsync();
            await Task.WhenAll(recoveries, indexes).WaitAsync(TimeSpan.FromMinutes(2)).ContinueWith(_ => { }, TaskScheduler.Default);
            await _app.StopAsync(CancellationToken.None);
            events.Record("server.stop", null, "server", "stopped cleanly; the pool is flushed and closed");
            await _app.DisposeAsync();
        }
        finally
        {
            _pool.Dispose();
            try
            {
                File.Delete(_data.RuntimePath);
            }
            catch (IOException)
            {
                // A stale server.json is harmless: the CLI checks that its process is alive.
            }

            // Removed while still held, as the very last step (the pool is closed): a server starting
            // now either fails on the held lock or creates a fresh file. After kill -9 the file stays,
            // unlocked, and is simply taken again.
            File.Delete(_data.LockPath);
            await _lock.DisposeAsync();
            ServerLog.Stopped(_logger);
        }
    }
}
