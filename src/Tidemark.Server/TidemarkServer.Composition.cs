using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
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

/// <summary>
/// How `serve` composes the process: the host and its listeners, the services by area (core,
/// agents, replication, protocols), and the HTTP pipeline. <see cref="StartLockedAsync"/> calls
/// these in order; each registers what its area needs and nothing starts until the app does.
/// </summary>
public sealed partial class TidemarkServer
{
    /// <summary>Kestrel's listen options, known once Kestrel is configured; the start reads their bound ports.</summary>
    private sealed class ListenerOptions
    {
        public ListenOptions? Api { get; set; }

        public ListenOptions? Replication { get; set; }
    }

    private static WebApplicationBuilder CreateBuilder(ServerSettings settings)
    {
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
        return builder;
    }

    private static ListenerOptions ConfigureListeners(WebApplicationBuilder builder, ServerSettings settings, System.Security.Cryptography.X509Certificates.X509Certificate2? certificate, ServerIdentity identity)
    {
        var http = ServerSettings.ParseEndpoint(settings.Http, "http");
        var listeners = new ListenerOptions();
        builder.WebHost.ConfigureKestrel(k =>
        {
            // Long request lines reach RequestLimits, which refuses them with a problem document (Kestrel's 414 is bare).
            k.Limits.MaxRequestLineSize = RequestLimits.KestrelRequestLineBytes;
            k.Listen(http, listen =>
            {
                listeners.Api = listen;
                if (certificate is not null)
                {
                    listen.UseHttps(certificate);
                }
            });
            if (!settings.ReplicationDisabled)
            {
                k.Listen(ServerSettings.ParseEndpoint(settings.Replication, "replication"), listen =>
                {
                    listeners.Replication = listen;
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
        return listeners;
    }

    private static void AddHostServices(IServiceCollection services, ServerIdentity identity)
    {
        services.AddSingleton(identity);
        services.AddSingleton(new ReplicationEndpoint());
        services.Configure<JsonOptions>(o =>
        {
            o.SerializerOptions.Encoder = ApiJson.Options.Encoder;
            o.SerializerOptions.RespectNullableAnnotations = true;
            o.SerializerOptions.RespectRequiredConstructorParameters = true;
        });
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30));
        services.AddOpenApi();
    }

    private static void AddCoreServices(IServiceCollection services, Pool pool, DataDirectory data, string token)
    {
        services.AddSingleton(pool);
        services.AddSingleton(sp => new PartnerRegistry(pool.Control, data.PartnersPath, TimeProvider.System, sp.GetRequiredService<ILogger<PartnerRegistry>>()));
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton(data);
        services.AddSingleton(sp => TokenStore.Open(pool.Control, data.TokensPath, token, TimeProvider.System, sp.GetRequiredService<ILogger<TokenStore>>()));
        services.AddSingleton(sp => new EventLog(data.EventsPath, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Events")));
        services.AddSingleton(new IoMetrics());
        var metricsScope = new MetricsScope();
        services.AddSingleton(metricsScope);
        services.AddSingleton<ServerMeter>();
        services.AddTidemarkMetrics(metricsScope);
        services.AddSingleton<JobManager>();
        services.AddSingleton(sp => new CapacityManager(
            pool,
            sp.GetRequiredService<EventLog>(),
            sp.GetRequiredService<IoMetrics>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<CapacityManager>>(),
            data.CapacityPath));
        services.AddHostedService(sp => sp.GetRequiredService<CapacityManager>());
    }

    private static void AddAgentServices(IServiceCollection services, Pool pool, DataDirectory data, ServerIdentity identity)
    {
        services.AddSingleton(sp => new HostRegistry(pool, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton(sp => new SnapshotCoordinator(
            pool,
            sp.GetRequiredService<HostRegistry>(),
            identity,
            sp.GetRequiredService<EventLog>(),
            sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Agents"),
            sp.GetRequiredService<TimeProvider>())
        {
            Attachments = sp.GetRequiredService<ExportRegistry>().AttachmentsOf,
        });
        // What the verifier, the mail recovery and the mail indexer need to reach an agent, built once.
        services.AddSingleton(sp => new AgentChannel(
            pool,
            sp.GetRequiredService<ExportRegistry>(),
            sp.GetRequiredService<HostRegistry>(),
            identity,
            sp.GetRequiredService<EventLog>(),
            sp.GetRequiredService<ILoggerFactory>().CreateLogger(AgentChannel.LoggerCategory),
            sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton(sp => new SnapshotVerifier(sp.GetRequiredService<AgentChannel>()));
        services.AddSingleton<IMetricsSource>(sp => sp.GetRequiredService<SnapshotVerifier>());
        services.AddSingleton(sp => new RecoveryViews(sp.GetRequiredService<AgentChannel>()));
        services.AddSingleton(sp => new MailRecoveryRunner(sp.GetRequiredService<AgentChannel>(), sp.GetRequiredService<RecoveryViews>()));
        services.AddSingleton(sp => new MailIndexer(sp.GetRequiredService<AgentChannel>(), sp.GetRequiredService<JobManager>()));
        services.AddSingleton(sp => new PolicyManager(
            pool,
            sp.GetRequiredService<EventLog>(),
            sp.GetRequiredService<ExportRegistry>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Policies"),
            data.PoliciesPath)
        {
            Agents = sp.GetRequiredService<SnapshotCoordinator>(),
            Verifier = sp.GetRequiredService<SnapshotVerifier>(),
            MailIndexer = sp.GetRequiredService<MailIndexer>(),
        });
        services.AddHostedService(sp => sp.GetRequiredService<PolicyManager>());
    }

    private static void AddReplicationServices(IServiceCollection services, Pool pool, DataDirectory data, ServerSettings settings, ServerIdentity identity)
    {
        services.AddSingleton(sp => new ReplicaReceiver(pool, sp.GetRequiredService<ILogger<ReplicaReceiver>>(), (data.PromotedPath, data.IncomingPath, data.ReceivingPath, data.StandbyPath))
        {
            WritableExports = sp.GetRequiredService<ExportRegistry>().WritableExportsOf,
            ExportsOfSnapshot = address => sp.GetRequiredService<ExportRegistry>().ExportsOfTarget(address),
            ImageChanged = sp.GetRequiredService<ExportRegistry>().RefreshStandby,
            HeldByClients = address => sp.GetRequiredService<ClientSessions>().AttachedTo(address).Count > 0,
            ThrowIfAttached = (target, operation) => sp.GetRequiredService<ClientSessions>().ThrowIfAttached(target, operation, canForce: false),
            FaultPoint = CrashPoint.FromEnvironment(),
        });
        services.AddSingleton(sp => new ReplicaManager(
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
            Cutter = new AgentReplicaCutter(sp.GetRequiredService<SnapshotCoordinator>()),
            SnapshotLabel = sp.GetRequiredService<SnapshotCoordinator>().ReplicatedLabelOf,
        });
        services.AddHostedService(sp => new ReplicaScheduler(
            sp.GetRequiredService<ReplicaManager>(),
            sp.GetRequiredService<JobManager>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<ReplicaScheduler>>()));
        services.AddSingleton<IMetricsSource>(sp => sp.GetRequiredService<JobManager>());
        services.AddSingleton(sp => new ReplicaInstruments(sp.GetRequiredService<ReplicaManager>().List, sp.GetRequiredService<MetricsScope>()));
    }

    private static void AddProtocolServices(IServiceCollection services, Pool pool, DataDirectory data, ServerSettings settings, System.Security.Cryptography.X509Certificates.X509Certificate2? certificate)
    {
        services.AddSingleton(sp => new ExportRegistry(pool, data.ExportsPath, sp.GetRequiredService<ILogger<ExportRegistry>>(), sp.GetRequiredService<IoMetrics>())
        {
            TlsAvailable = certificate is not null,
        });
        services.AddSingleton(sp => new ClientSessions(sp.GetRequiredService<ILogger<ClientSessions>>()) { TargetOf = sp.GetRequiredService<ExportRegistry>().TargetOf });
        if (!settings.NbdDisabled)
        {
            // With TLS configured for the API, NBD clients may upgrade with STARTTLS using the same certificate.
            services.AddSingleton(new NbdServerOptions
            {
                StartTls = certificate is null ? null : (transport, ct) => PipeTls.UpgradeAsync(transport, certificate, ct),
            });
        }

        if (!settings.NbdDisabled)
        {
            services.AddSingleton(sp => new NbdListener(
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
            services.AddHostedService(sp => sp.GetRequiredService<NbdListener>());
        }

        if (!settings.IscsiDisabled)
        {
            services.AddSingleton(new IscsiLimits());
            services.AddSingleton(sp => new IscsiListener(
                ServerSettings.ParseEndpoint(settings.Iscsi, "iscsi"),
                sp.GetRequiredService<ExportRegistry>().IscsiCatalog,
                sp.GetRequiredService<IscsiLimits>(),
                sp.GetRequiredService<ILogger<IscsiListener>>(),
                settings.ToConnectionLimits())
            {
                ReceivePoll = settings.ReceivePollDuration,
                Sessions = sp.GetRequiredService<ClientSessions>(),
            });
            services.AddHostedService(sp => sp.GetRequiredService<IscsiListener>());
        }
    }

    private static void ConfigurePipeline(WebApplication app, DataDirectory data, Pool pool, ILogger logger)
    {
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
    }
}
