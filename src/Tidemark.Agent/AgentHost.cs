using System.Net;
using System.Security.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Tidemark.Api;

namespace Tidemark.Agent;

/// <summary>
/// `tidemark agent run`: the agent's HTTPS listener (TLS 1.3, both sides' certificates pinned; ADR
/// 0015). Only servers paired with `tidemark agent pair` may call it; anyone else gets a 403 naming
/// its fingerprint. The API is /agent/v1: status, mounts, quiesce, resume, verify. Stopping resumes whatever
/// is still quiesced.
/// </summary>
public sealed class AgentHost : IAsyncDisposable
{
    public const string PathPrefix = "/agent/v1";

    private readonly WebApplication _app;
    private readonly QuiesceSessions _sessions;

    private AgentHost(WebApplication app, QuiesceSessions sessions, AgentIdentity identity, AgentConfig config)
    {
        _app = app;
        _sessions = sessions;
        Identity = identity;
        Config = config;
    }

    public AgentIdentity Identity { get; }

    public AgentConfig Config { get; }

    public IPEndPoint? Endpoint { get; private set; }

    public static async Task<AgentHost> StartAsync(string agentDirectory, string? listenOverride = null, CancellationToken ct = default)
    {
        var config = AgentConfig.Load(agentDirectory);
        if (listenOverride is not null)
        {
            config = config with { Listen = listenOverride };
        }

        config.Validate(AgentConfig.PathIn(agentDirectory));
        if (config.Servers.Count == 0)
        {
            throw new ArgumentException($"no server is paired with this agent ({AgentConfig.PathIn(agentDirectory)}); run 'tidemark agent pair --server-fingerprint FP' with the fingerprint 'tidemark partner identity' prints on the server");
        }

        if (OperatingSystem.IsLinux() && LocalMounts.DeclaredMountHolding(config, agentDirectory) is { } holding)
        {
            throw new ArgumentException(LocalMounts.AgentDirectoryProblem(agentDirectory, holding));
        }

        var identity = AgentIdentity.LoadOrCreate(agentDirectory);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = AppContext.BaseDirectory,
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff ";
        });
        ListenOptions? listen = null;
        builder.WebHost.ConfigureKestrel(k => k.Listen(AgentConfig.ParseListen(config.Listen, "listen"), l =>
        {
            listen = l;
            l.UseHttps(identity.Certificate, https =>
            {
                https.SslProtocols = SslProtocols.Tls13;
                https.ClientCertificateMode = ClientCertificateMode.RequireCertificate;
                // Any certificate completes TLS; the gate below answers an unknown one with a 403 naming
                // its fingerprint, so a server that is not paired fails with a reason, not a reset.
                https.ClientCertificateValidation = (_, _, _) => true;
            });
        }));
        builder.Services.Configure<Microsoft.AspNetCore.Http.Json.JsonOptions>(o => o.SerializerOptions.Encoder = ApiJson.Options.Encoder);
        var app = builder.Build();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Tidemark.Agent");
        var journal = new QuiesceJournal(agentDirectory, logger);
        var scripts = new ScriptPlugin(config, logger, journal);
        IQuiescePlugin[] plugins = OperatingSystem.IsLinux()
            ? [scripts, new PostgresPlugin(config, logger), new MailPlugin(config, logger, journal), new FileSystemPlugin(config, logger, journal: journal)]
            : [scripts, new PostgresPlugin(config, logger), new FileSystemPlugin(config, logger, journal: journal)];
        var sessions = new QuiesceSessions(
            plugins,
            TimeSpan.FromSeconds(config.DeadlineSeconds),
            TimeProvider.System,
            logger,
            OperatingSystem.IsLinux() ? attachments => NbdFuseAttachments.Attached(LocalMounts.List(config), attachments) : null);
        if (OperatingSystem.IsLinux())
        {
            // Before listening: a quiesce must not start while a killed run's hold is still in place.
            sessions.ReportRecovery(await JournalRecovery.RunAsync(journal, config, scripts, logger, ct: ct));
        }

        var paired = config.Servers.Select(s => s.Fingerprint.ToLowerInvariant()).ToHashSet(StringComparer.Ordinal);
        app.Use(async (context, next) =>
        {
            var certificate = await context.Connection.GetClientCertificateAsync(context.RequestAborted);
            var fingerprint = certificate is null ? null : AgentIdentity.FingerprintOf(certificate);
            if (fingerprint is null || !paired.Contains(fingerprint))
            {
                AgentLog.CallerRefused(logger, fingerprint ?? "(none)");
                await WriteProblemAsync(context, StatusCodes.Status403Forbidden, "not-paired", $"certificate {fingerprint ?? "(none)"} is not a server paired with agent {config.HostName}; run 'tidemark agent pair --server-fingerprint {fingerprint ?? "FP"}' on the host");
                return;
            }

            try
            {
                await next(context);
            }
            catch (StorageException ex)
            {
                await WriteProblemAsync(context, StatusOf(ex.Error), ErrorCodes.For(ex.Error), ex.Message);
            }
            catch (Microsoft.AspNetCore.Http.BadHttpRequestException ex)
            {
                await WriteProblemAsync(context, StatusCodes.Status400BadRequest, "invalid-argument", $"the request body is not a valid request ({ex.Message})");
            }
        });
        var api = app.MapGroup(PathPrefix);
        api.MapGet("/status", () => TypedResults.Ok(new AgentStatusDto(
            config.HostName,
            identity.Fingerprint,
            typeof(AgentHost).Assembly.GetName().Version?.ToString() ?? "0",
            sessions.DefaultDeadline.TotalSeconds,
            sessions.Open,
            sessions.Last,
            sessions.Recovered,
            config.MailStoreLocations())));
        api.MapGet("/mounts", () => TypedResults.Ok(LocalMounts.List(config)));
        api.MapPost("/quiesce", async (QuiesceRequest request, CancellationToken requestAborted) =>
            TypedResults.Ok(await sessions.QuiesceAsync(request, requestAborted)));
        api.MapPost("/sessions/{id}/resume", async (string id) => TypedResults.Ok(await sessions.ResumeAsync(id)));
        var verifier = OperatingSystem.IsLinux() ? new SnapshotVerifier(config, logger) : null;
        api.MapPost("/verify", async (VerifyRequest request, CancellationToken requestAborted) =>
        {
            if (!OperatingSystem.IsLinux() || verifier is null)
            {
                throw new StorageException(StorageError.Unsupported, "verification mounts a view with nbdfuse and a loop device: it needs a Linux host");
            }

            return TypedResults.Ok(await verifier.VerifyAsync(request, requestAborted));
        });
        api.MapMailRecovery(config, agentDirectory, logger);
        app.MapFallback(context => WriteProblemAsync(context, StatusCodes.Status404NotFound, "not-found", $"no such agent resource {context.Request.Path}; the agent serves {PathPrefix}/status, /mounts, /quiesce, /sessions/ID/resume, /verify"));

        var host = new AgentHost(app, sessions, identity, config);
        try
        {
            await app.StartAsync(ct);
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }

        host.Endpoint = listen!.IPEndPoint;
        AgentLog.Listening(logger, config.HostName, host.Endpoint, identity.Fingerprint, config.DeadlineSeconds);
        return host;
    }

    public Task WaitForShutdownAsync(CancellationToken ct = default) => _app.WaitForShutdownAsync(ct);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _app.StopAsync(CancellationToken.None);
            await _app.DisposeAsync();
        }
        finally
        {
            try
            {
                await _sessions.DisposeAsync();
            }
            finally
            {
                Identity.Dispose();
            }
        }
    }

    private static int StatusOf(StorageError error) => error switch
    {
        StorageError.InvalidArgument or StorageError.InvalidName => StatusCodes.Status400BadRequest,
        StorageError.NotFound => StatusCodes.Status404NotFound,
        StorageError.Busy or StorageError.AlreadyExists => StatusCodes.Status409Conflict,
        StorageError.Unsupported => StatusCodes.Status422UnprocessableEntity,
        StorageError.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };

    private static Task WriteProblemAsync(HttpContext context, int status, string code, string detail)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new ProblemDto(null, code, status, detail, code), ApiJson.Options, "application/problem+json");
    }
}
