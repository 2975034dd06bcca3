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
public sealed class TidemarkServer : IAsyncDisposable
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

        // The content root is the program's own directory, and configuration files are not watched:
        // the host would otherwise put a recursive FileSystemWatcher on the data directory, and every
        // write to a store file there would wake it (measured: 14% of the CPU under 4K random writes).
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = AppContext.BaseDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        var level = Enum.Parse<LogLevel>(settings.LogLevel, ignoreCase: true);
        builder.Logging.SetMinimumLevel(level);
        builder.Logging.AddFilter("Microsoft.AspNetCore", level > LogLevel.Warning ? level : LogLevel.Warning);
        // A start failure is reported by `serve` in one actionable line; the host's stack trace adds nothing.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical);
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff ";
        });
        var http = ServerSettings.ParseEndpoint(settings.Http, "http");
        var certificate = TlsCertificates.Load(settings, data);
        var identity = ServerIdentity.LoadOrCreate(data.IdentityPath);
        ListenOptions? replicationListen = null;
        ListenOptions? apiListen = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            // Long request lines reach RequestLimits, which refuses them with a problem document (Kestrel's 414 is bare).
            k.Limits.MaxRequestLineSize = RequestLimits.KestrelRequestLineBytes;
            k.Listen(http, listen =>
            {
                apiListen = listen;
                if (certificate is not null)
                {
                    listen.UseHttps(certificate);
                }
            });
            if (!settings.ReplicationDisabled)
            {
                k.Listen(ServerSettings.ParseEndpoint(settings.Replication, "replication"), listen =>
                {
                    replicationListen = listen;
                    listen.UseHttps(identity.Certificate, https =>
                    {
                        https.SslProtocols = System.Security.Authentication.SslProtocols.Tls13;
                        https.ClientCertificateMode = Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.RequireCertificate;
                        // Any certificate completes TLS; ReplicationGate answers an unknown one with a
                        // 403 that names its fingerprint, so the sender fails at once with a reason
                        // instead of retrying what looks like a broken link.
                        https.ClientCertificateValidation = (_, _, _) => true;
                    });
                    listen.Use(next => connection =>
                    {
                        connection.Items[ReplicationGate.ConnectionMark] = true;
                        return next(connection);
                    });
                });
            }
        });
        builder.Services.AddSingleton(identity);
        builder.Services.AddSingleton(new ReplicationEndpoint());
        builder.Services.Configure<JsonOptions>(o =>
        {
            o.SerializerOptions.Encoder = ApiJson.Options.Encoder;
            o.SerializerOptions.RespectNullableAnnotations = true;
            o.SerializerOptions.RespectRequiredConstructorParameters = true;
        });
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        builder.Services.AddOpenApi();

        // The pool opens before anything can reach it and closes after every listener stopped.
        var pool = OpenPool(data, settings);
        WebApplication? app = null;
        try
        {
            builder.Services.AddSingleton(pool);
            builder.Services.AddSingleton(sp => new PartnerRegistry(pool.Control, data.PartnersPath, TimeProvider.System, sp.GetRequiredService<ILogger<PartnerRegistry>>()));
            builder.Services.AddSingleton(TimeProvider.System);
            builder.Services.AddSingleton(data);
            builder.Services.AddSingleton(sp => TokenStore.Open(pool.Control, data.TokensPath, token, TimeProvider.System, sp.GetRequiredService<ILogger<TokenStore>>()));
            builder.Services.AddSingleton(sp => new EventLog(data.EventsPath, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Events")));
            builder.Services.AddSingleton(new IoMetrics());
            var metricsScope = new MetricsScope();
            builder.Services.AddSingleton(metricsScope);
            builder.Services.AddSingleton<ServerMeter>();
            builder.Services.AddTidemarkMetrics(metricsScope);
            builder.Services.AddSingleton<JobManager>();
            builder.Services.AddSingleton(sp => new CapacityManager(
                pool,
                sp.GetRequiredService<EventLog>(),
                sp.GetRequiredService<IoMetrics>(),
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<ILogger<CapacityManager>>(),
                data.CapacityPath));
            builder.Services.AddHostedService(sp => sp.GetRequiredService<CapacityManager>());
            builder.Services.AddSingleton(sp => new HostRegistry(pool, sp.GetRequiredService<TimeProvider>()));
            builder.Services.AddSingleton(sp => new SnapshotCoordinator(
                pool,
                sp.GetRequiredService<HostRegistry>(),
                identity,
                sp.GetRequiredService<EventLog>(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Agents"),
                sp.GetRequiredService<TimeProvider>()));
            builder.Services.AddSingleton(sp => new SnapshotVerifier(
                pool,
                sp.GetRequiredService<ExportRegistry>(),
                sp.GetRequiredService<HostRegistry>(),
                identity,
                sp.GetRequiredService<EventLog>(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Agents"),
                sp.GetRequiredService<TimeProvider>()));
            builder.Services.AddSingleton<IMetricsSource>(sp => sp.GetRequiredService<SnapshotVerifier>());
            builder.Services.AddSingleton(sp => new MailRecoveryRunner(
                pool,
                sp.GetRequiredService<ExportRegistry>(),
                sp.GetRequiredService<HostRegistry>(),
                identity,
                sp.GetRequiredService<EventLog>(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Agents"),
                sp.GetRequiredService<TimeProvider>()));
            builder.Services.AddSingleton(sp => new PolicyManager(
                pool,
                sp.GetRequiredService<EventLog>(),
                sp.GetRequiredService<ExportRegistry>(),
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Policies"),
                data.PoliciesPath)
            {
                Agents = sp.GetRequiredService<SnapshotCoordinator>(),
                Verifier = sp.GetRequiredService<SnapshotVerifier>(),
            });
            builder.Services.AddHostedService(sp => sp.GetRequiredService<PolicyManager>());
            builder.Services.AddSingleton(sp => new ReplicaReceiver(pool, sp.GetRequiredService<ILogger<ReplicaReceiver>>(), (data.PromotedPath, data.IncomingPath, data.ReceivingPath, data.StandbyPath))
            {
                WritableExports = sp.GetRequiredService<ExportRegistry>().WritableExportsOf,
                ExportsOfSnapshot = address => sp.GetRequiredService<ExportRegistry>().ExportsOfTarget(address),
                ImageChanged = sp.GetRequiredService<ExportRegistry>().RefreshStandby,
                HeldByClients = address => sp.GetRequiredService<ClientSessions>().AttachedTo(address).Count > 0,
                ThrowIfAttached = (target, operation) => sp.GetRequiredService<ClientSessions>().ThrowIfAttached(target, operation, canForce: false),
                FaultPoint = CrashPoint.FromEnvironment(),
            });
            builder.Services.AddSingleton(sp => new ReplicaManager(
                pool,
                sp.GetRequiredService<ReplicaReceiver>(),
                sp.GetRequiredService<PartnerRegistry>(),
                identity,
                e => sp.GetRequiredService<EventLog>().Record(e.Kind, e.Subject, "server", e.Message, e.Outcome),
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Replication"),
                data.ReplicasPath)
            {
                RetryDelay = ServerSettings.Duration(settings.ReplicationRetryDelay, "replication-retry-delay"),
                LastPolicySnapshot = sp.GetRequiredService<PolicyManager>().LastSnapshotOf,
                CreateExport = sp.GetRequiredService<ExportRegistry>().Create,
            });
            builder.Services.AddHostedService(sp => new ReplicaScheduler(
                sp.GetRequiredService<ReplicaManager>(),
                sp.GetRequiredService<JobManager>(),
                sp.GetRequiredService<TimeProvider>(),
                sp.GetRequiredService<ILogger<ReplicaScheduler>>()));
            builder.Services.AddSingleton<IMetricsSource>(sp => sp.GetRequiredService<JobManager>());
            builder.Services.AddSingleton(sp => new ReplicaInstruments(sp.GetRequiredService<ReplicaManager>().List, metricsScope));
            builder.Services.AddSingleton(sp => new ExportRegistry(pool, data.ExportsPath, sp.GetRequiredService<ILogger<ExportRegistry>>(), sp.GetRequiredService<IoMetrics>())
            {
                TlsAvailable = certificate is not null,
            });
            builder.Services.AddSingleton(sp => new ClientSessions(sp.GetRequiredService<ILogger<ClientSessions>>()) { TargetOf = sp.GetRequiredService<ExportRegistry>().TargetOf });
            if (!settings.NbdDisabled)
            {
                // With TLS configured for the API, NBD clients may upgrade with STARTTLS using the same certificate.
                builder.Services.AddSingleton(new NbdServerOptions
                {
                    StartTls = certificate is null ? null : (transport, ct) => PipeTls.UpgradeAsync(transport, certificate, ct),
                });
            }

            if (!settings.NbdDisabled)
            {
                builder.Services.AddSingleton(sp => new NbdListener(
                    ServerSettings.ParseEndpoint(settings.Nbd, "nbd"),
                    settings.NbdSocketDisabled ? null : Path.Combine(data.Root, settings.NbdSocket!),
                    sp.GetRequiredService<ExportRegistry>().Catalog,
                    sp.GetRequiredService<NbdServerOptions>(),
                    sp.GetRequiredService<ILogger<NbdListener>>(),
                    settings.ToConnectionLimits())
                {
                    ReceivePoll = settings.ReceivePollDuration,
                    Sessions = sp.GetRequiredService<ClientSessions>(),
                });
                builder.Services.AddHostedService(sp => sp.GetRequiredService<NbdListener>());
            }

            if (!settings.IscsiDisabled)
            {
                builder.Services.AddSingleton(new IscsiLimits());
                builder.Services.AddSingleton(sp => new IscsiListener(
                    ServerSettings.ParseEndpoint(settings.Iscsi, "iscsi"),
                    sp.GetRequiredService<ExportRegistry>().IscsiCatalog,
                    sp.GetRequiredService<IscsiLimits>(),
                    sp.GetRequiredService<ILogger<IscsiListener>>(),
                    settings.ToConnectionLimits())
                {
                    ReceivePoll = settings.ReceivePollDuration,
                    Sessions = sp.GetRequiredService<ClientSessions>(),
                });
                builder.Services.AddHostedService(sp => sp.GetRequiredService<IscsiListener>());
            }

            builder.Services.AddConsole(settings);
            builder.Services.AddSingleton<IMetricsSource>(sp => new ListenerMetrics([sp.GetService<NbdListener>(), sp.GetService<IscsiListener>()]));
            app = builder.Build();
            var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark");
            var registry = app.Services.GetRequiredService<ExportRegistry>();
            var events = app.Services.GetRequiredService<EventLog>();
            var loosened = data.RestrictPermissions(pool.GetInfo().Stores.Select(st => st.Path));
            if (loosened.Count > 0)
            {
                // Other local users could read every volume through these; say so once, loudly.
                var list = string.Join(", ", loosened.Take(10)) + (loosened.Count > 10 ? $" and {loosened.Count - 10} more" : "");
                ServerLog.DataDirectoryRestricted(logger, loosened.Count, list);
                events.Record("server.permissions", null, "server", $"{loosened.Count} paths were readable by other users and were restricted to the owner: {list}");
            }

            var audit = new AuditMiddleware(events, app.Services.GetRequiredService<TimeProvider>());
            app.Use(audit.InvokeAsync);
            app.Use(Problems.HandleAsync);
            app.Use(RequestLimits.InvokeAsync);
            var auth = new TokenAuthentication(
                app.Services.GetRequiredService<TokenStore>(),
                new LoginThrottle(TimeProvider.System),
                events,
                app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Auth"))
            {
                Sessions = app.Services.GetRequiredService<ConsoleSessions>(),
            };
            app.Use(new ReplicationGate(auth, app.Services.GetRequiredService<PartnerRegistry>()).InvokeAsync);
            app.MapOpenApi();
            app.MapTidemarkApi();
            app.MapEventApi();
            app.MapTokenApi();
            app.MapMetrics();
            app.MapJobApi();
            app.MapCapacityApi();
            app.MapPartnerApi();
            app.MapPolicyApi();
            app.MapStreamApi();
            app.MapReplicaApi();
            app.MapHostApi();
            app.MapRecoveryApi();
            app.MapMailRecoveryJobApi();
            app.MapConsole(auth);
            app.Services.GetRequiredService<PolicyManager>().IsProtected = app.Services.GetRequiredService<ReplicaManager>().Protects;
            app.MapFallback(RequestLimits.NoEndpointAsync);

            var server = new TidemarkServer(app, pool, data, dataLock, settings, logger)
            {
                Token = token,
                TlsFingerprint = certificate is null ? null : TlsCertificates.Fingerprint(certificate),
            };
            await server.StartCoreAsync(registry, apiListen!, replicationListen, cancellationToken);
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

        // Before the policies start: a view a killed server left mid-verification goes, with an event.
        _app.Services.GetRequiredService<SnapshotVerifier>().DeleteLeftoverViews();
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
