using System.IO.Compression;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Agents;
using Tidemark.Server.Alerts;
using Tidemark.Server.Api;
using Tidemark.Server.Events;
using Tidemark.Server.Jobs;
using Tidemark.Server.Policies;
using Tidemark.Server.Replication;

namespace Tidemark.Server.WebConsole;

/// <summary>
/// The web console (ADR 0016): its page at "/", its files under /console/, sign-in and sign-out at
/// /console/session, and one read-only summary for the dashboard at /api/v1/console/dashboard (so
/// a pool of 1,000 volumes is one request, not 1,001). Every change the console makes goes to the
/// ordinary API endpoints with the session cookie, so the same role checks and audit apply.
/// </summary>
public static class ConsoleEndpoints
{
    /// <summary>Problem code of a change made with a session cookie but without its CSRF token.</summary>
    public const string CsrfCode = "csrf";

    /// <summary>Events on the dashboard.</summary>
    public const int DashboardEvents = 15;

    /// <summary>Jobs a live jobs event carries, the newest (the page shows these; `tidemark job list` shows all).</summary>
    public const int LiveJobs = 100;

    /// <summary>Endpoint metadata: reachable without a token (the page, its files, sign-in).</summary>
    public sealed class Anonymous;

    public static void AddConsole(this IServiceCollection services, ServerSettings settings)
    {
        services.AddSingleton(sp => new AlertSettings(sp.GetRequiredService<Pool>(), AlertThresholds.From(settings)));
        services.AddSingleton(sp =>
        {
            var thresholds = sp.GetRequiredService<AlertSettings>();
            return new AlertEvaluator(() => thresholds.Current, sp.GetRequiredService<TimeProvider>());
        });
        services.AddSingleton(sp => new ConsoleUpdates(sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<ConsoleAssets>();
        services.AddSingleton<ConsoleSessions>();
        services.AddSingleton<CapacityHistory>();
        services.AddHostedService(sp => sp.GetRequiredService<CapacityHistory>());
        services.AddSingleton<IoHistory>();
        services.AddHostedService(sp => sp.GetRequiredService<IoHistory>());
        services.AddSingleton<LagHistory>();
        services.AddHostedService(sp => sp.GetRequiredService<LagHistory>());
    }

    public static void MapConsole(this IEndpointRouteBuilder app, TokenAuthentication auth)
    {
        var anonymous = new Anonymous();
        var assets = app.ServiceProvider.GetRequiredService<ConsoleAssets>();
        Task Asset(HttpContext c, string file) =>
            assets.TryWrite(c, file, out var written)
                ? written
                : Problems.WriteAsync(c, StatusCodes.Status404NotFound, ErrorCodes.NotFound, "Not found", $"the console has no file '{Bounded.Text(file, 64)}'");
        app.MapGet("/", (HttpContext c) => Asset(c, "index.html")).WithMetadata(anonymous).ExcludeFromDescription();
        app.MapGet("/console/{file}", (HttpContext c, string file) => Asset(c, file)).WithMetadata(anonymous).ExcludeFromDescription();

        app.MapPost("/console/session", (HttpContext c, TokenStore tokens, ConsoleSessions sessions, EventLog events, ConsoleSignInRequest request) =>
            SignInAsync(c, auth, tokens, sessions, events, request))
            .WithMetadata(anonymous).WithName("console.signin").WithTags("console");
        // Anonymous so that a page load before sign-in is not counted as a failed login by the throttle.
        app.MapGet("/console/session", (HttpContext c, ConsoleSessions sessions) =>
            sessions.Find(c.Request.Cookies[ConsoleSessions.CookieName]) is { } found
                ? c.Response.WriteAsJsonAsync(SessionDto(found.Token, found.Session), ApiJson.Options)
                : Problems.WriteAsync(c, StatusCodes.Status401Unauthorized, ErrorCodes.Unauthorized, "Unauthorized", "not signed in to the console; sign in with POST /console/session {\"token\": SECRET}"))
            .WithMetadata(anonymous).WithTags("console");
        // Anonymous too: every role may sign out (the role check would make auditors need operator for a DELETE).
        // The CSRF token is checked here instead, so another site cannot sign anyone out.
        app.MapDelete("/console/session", (HttpContext c, ConsoleSessions sessions, ConsoleUpdates updates, EventLog events) =>
        {
            if (sessions.Find(c.Request.Cookies[ConsoleSessions.CookieName]) is { } found)
            {
                if (!ConsoleSessions.CsrfMatches(found.Session, c.Request.Headers[ConsoleSessions.CsrfHeader].ToString()))
                {
                    return Problems.WriteAsync(c, StatusCodes.Status403Forbidden, CsrfCode, "Forbidden", $"signing out needs the session's {ConsoleSessions.CsrfHeader} header");
                }

                sessions.End(found.Session.Id);
                updates.CloseSession(found.Session.Id);
                events.Record("console.signout", found.Token.Name, found.Token.Name, "signed out of the web console", "ok", c.Connection.RemoteIpAddress?.ToString());
            }

            c.Response.Cookies.Delete(ConsoleSessions.CookieName, CookieOptions(c));
            c.Response.StatusCode = StatusCodes.Status204NoContent;
            return Task.CompletedTask;
        }).WithMetadata(anonymous).WithName("console.signout").WithTags("console");

        app.MapGet("/api/v1/console/dashboard", (HttpContext c, Pool pool, ExportRegistry exports, PolicyManager policies, ReplicaManager replicas, EventLog events, JobManager jobs, CapacityHistory history, AlertEvaluator alerts, AlertSettings thresholds, SnapshotVerifier verifier) =>
            WriteCompressedAsync(c, Dashboard(pool, exports, policies, replicas, events, jobs, history, alerts, verifier) with { Thresholds = thresholds.Get() }))
            .Produces<ConsoleDashboardDto>().WithTags("console");

        // Not named ".../stream": that suffix marks a volume's data stream, which needs operator (ApiRoles).
        app.MapGet("/api/v1/console/updates", (HttpContext c, ConsoleSessions sessions, ConsoleUpdates updates, IHostApplicationLifetime lifetime, Pool pool, PolicyManager policies, ReplicaManager replicas, EventLog events, JobManager jobs, AlertEvaluator alerts, SnapshotVerifier verifier) =>
            UpdatesAsync(c, sessions, updates, () => LiveEvents(pool, policies, replicas, events, jobs, alerts, verifier), lifetime.ApplicationStopping))
            .WithTags("console");
        app.MapAlertApi();

        // The charts' histories (in memory, bounded): a volume's I/O rates, and every replica's lag.
        app.MapGet("/api/v1/console/volumes/{name}/io", (Pool pool, IoHistory history, string name) =>
        {
            pool.GetVolume(name); // 404 for a volume that does not exist, rather than an empty chart
            return TypedResults.Ok(new ConsoleIoHistoryDto(
                (int)IoHistory.SampleInterval.TotalSeconds,
                [.. history.Ring.Get(name).Select(s => new ConsoleIoSampleDto(s.Time, s.Values[0], s.Values[1], s.Values[2], s.Values[3]))]));
        }).WithTags("console");
        app.MapGet("/api/v1/console/replication-lag", (LagHistory history) =>
        {
            var (times, series) = history.Ring.All();
            return TypedResults.Ok(new ConsoleLagHistoryDto(
                (int)LagHistory.SampleInterval.TotalSeconds,
                times,
                [.. series.Select(s => new ConsoleLagSeriesDto(s.Name, s.Values))]));
        }).WithTags("console");
    }

    private static async Task SignInAsync(HttpContext c, TokenAuthentication auth, TokenStore tokens, ConsoleSessions sessions, EventLog events, ConsoleSignInRequest request)
    {
        var token = tokens.Find(request.Token?.Trim() ?? "");
        if (token is null)
        {
            await auth.RefuseSignInAsync(c);
            return;
        }

        auth.SignedIn(c);
        var session = sessions.Create(token);
        c.Response.Cookies.Append(ConsoleSessions.CookieName, session.Id, CookieOptions(c));
        // The sign-in endpoint is anonymous, so the audit middleware does not see it: record it here, under the token's name.
        events.Record("console.signin", token.Name, token.Name, $"signed in to the web console as {token.Name} ({token.Role})", "ok", c.Connection.RemoteIpAddress?.ToString());
        await c.Response.WriteAsJsonAsync(SessionDto(token, session), ApiJson.Options);
    }

    private static async Task UpdatesAsync(HttpContext c, ConsoleSessions sessions, ConsoleUpdates updates, Func<IReadOnlyList<(string, string)>> events, CancellationToken stopping)
    {
        // Authentication already resolved the cookie; a bearer client has no session to bound the stream by.
        var id = c.Request.Cookies[ConsoleSessions.CookieName];
        if (id is null || sessions.Find(id) is null)
        {
            await Problems.WriteAsync(c, StatusCodes.Status400BadRequest, ErrorCodes.BadRequest, "Bad request", "live updates are for signed-in console pages; scripts read GET /api/v1/alerts and GET /api/v1/jobs");
            return;
        }

        if (updates.TryOpen(id, out var refusal) is not { } lease)
        {
            await Problems.WriteAsync(c, StatusCodes.Status429TooManyRequests, ErrorCodes.For(StorageError.Busy), "Too many live streams", refusal!);
            return;
        }

        c.Response.ContentType = "text/event-stream; charset=utf-8";
        c.Response.Headers.CacheControl = "no-cache, no-transform";
        c.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()?.DisableBuffering();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(c.RequestAborted, stopping);
        await updates.RunAsync(
            lease,
            events,
            () => sessions.IsLive(id),
            async (text, ct) =>
            {
                await c.Response.WriteAsync(text, ct);
                await c.Response.Body.FlushAsync(ct);
            },
            stop.Token);
    }

    /// <summary>
    /// A live stream's events: "summary" (the alerts, running jobs, and a version that changes whenever
    /// the dashboard would show something else, so the page reloads it only then) and "jobs" (the newest
    /// <see cref="LiveJobs"/>). No per-volume work: a tick costs the same with 1,000 volumes as with one.
    /// </summary>
    private static IReadOnlyList<(string, string)> LiveEvents(Pool pool, PolicyManager policies, ReplicaManager replicas, EventLog events, JobManager jobs, AlertEvaluator alerts, SnapshotVerifier verifier)
    {
        var info = pool.GetInfo().ToDto();
        var jobList = jobs.List().Select(j => j.ToDto()).ToList();
        var alertList = alerts.Evaluate(info, policies.List(), replicas.List(), jobList, verifier.NewestPerVolume());
        var version = $"{info.UsedBytes}/{info.CapacityBytes}/{info.Volumes}/{info.Snapshots}/{events.LastSequenceNumber}";
        var summary = new ConsoleLiveSummaryDto(version, alertList, jobList.Count(j => j.State == "running"));
        var newest = jobList.AsEnumerable().Reverse().Take(LiveJobs).ToList();
        return
        [
            ("summary", JsonSerializer.Serialize(summary, ApiJson.Options)),
            ("jobs", JsonSerializer.Serialize(newest, ApiJson.Options)),
        ];
    }

    private static CookieOptions CookieOptions(HttpContext c) => new()
    {
        HttpOnly = true,
        SameSite = SameSiteMode.Strict,
        Secure = c.Request.IsHttps,
        Path = "/",
        IsEssential = true,
    };

    private static ConsoleSessionDto SessionDto(TokenDto token, ConsoleSessions.Session? session) =>
        new(token.Name, token.Role, session?.Csrf, [.. ApiRoles.AdminOnly.Order(StringComparer.Ordinal)]);

    /// <summary>
    /// The dashboard's JSON, Brotli- or gzip-compressed when the browser takes it: a line per volume
    /// is a few hundred bytes raw, and the summary of 1,000 volumes arrives as ~10 KB (bench/console;
    /// the first-load budget is 500 KB). It carries no secret, so compression cannot leak one (BREACH
    /// needs a secret beside attacker-chosen text in the same response).
    /// </summary>
    private static async Task WriteCompressedAsync<T>(HttpContext c, T value)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(value, ApiJson.Options);
        var response = c.Response;
        response.ContentType = "application/json; charset=utf-8";
        response.Headers.Vary = "Accept-Encoding";
        var accept = c.Request.Headers.AcceptEncoding.ToString();
        Stream? compressor = accept.Contains("br", StringComparison.OrdinalIgnoreCase) ? new BrotliStream(response.Body, CompressionLevel.Fastest, leaveOpen: true)
            : accept.Contains("gzip", StringComparison.OrdinalIgnoreCase) ? new GZipStream(response.Body, CompressionLevel.Fastest, leaveOpen: true)
            : null;
        if (compressor is null)
        {
            await response.Body.WriteAsync(json, c.RequestAborted);
            return;
        }

        response.Headers.ContentEncoding = compressor is BrotliStream ? "br" : "gzip";
        await using (compressor)
        {
            await compressor.WriteAsync(json, c.RequestAborted);
        }
    }

    private static ConsoleDashboardDto Dashboard(Pool pool, ExportRegistry exports, PolicyManager policies, ReplicaManager replicas, EventLog events, JobManager jobs, CapacityHistory history, AlertEvaluator alerts, SnapshotVerifier verifier)
    {
        var info = pool.GetInfo().ToDto();
        var policyList = policies.List();
        var verified = verifier.NewestPerVolume();
        var verifiedOf = verified.ToDictionary(v => v.Volume, StringComparer.Ordinal);
        var replicaList = replicas.List();
        var policyOf = new Dictionary<string, PolicyDto>(StringComparer.Ordinal);
        foreach (var p in policyList)
        {
            if (p.Definition.Volume is { } v)
            {
                policyOf.TryAdd(v, p);
            }
        }

        var replicaOf = replicaList.GroupBy(r => r.Volume, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);

        var volumes = new List<ConsoleVolumeDto>();
        foreach (var volume in pool.Volumes)
        {
            var snapshots = pool.ListSnapshots(volume.Name);
            var last = snapshots.Count == 0 ? null : snapshots.MaxBy(s => s.CreatedAt);
            policyOf.TryGetValue(volume.Name, out var policy);
            replicaOf.TryGetValue(volume.Name, out var replica);
            volumes.Add(new(
                volume.Name,
                volume.Kind.ToString().ToLowerInvariant(),
                volume.SizeBytes,
                volume.AllocatedBytes,
                snapshots.Count,
                last?.Name,
                last?.CreatedAt,
                exports.ExportsOfTarget(volume.Name).Count,
                policy?.Definition.Name,
                replica?.Partner,
                replica?.LagSeconds)
            {
                VerifiedSnapshot = verifiedOf.GetValueOrDefault(volume.Name)?.Snapshot,
                Verification = verifiedOf.GetValueOrDefault(volume.Name) is { } v ? SnapshotVerifier.ToDto(v.Record) : null,
            });
        }

        var jobList = jobs.List().Select(j => j.ToDto()).ToList();
        return new ConsoleDashboardDto(
            info,
            volumes,
            alerts.Evaluate(info, policyList, replicaList, jobList, verified),
            [.. events.Recent(DashboardEvents).Reverse()],
            history.Samples,
            jobList.Count(j => j.State == "running"));
    }
}

public sealed record ConsoleSignInRequest(string? Token);

/// <param name="Csrf">Send it as X-Tidemark-CSRF with every change; null when signed in with a bearer token.</param>
/// <param name="AdminOnly">The endpoint names only an admin may use (the console offers them only to admins).</param>
public sealed record ConsoleSessionDto(string Name, string Role, string? Csrf, IReadOnlyList<string> AdminOnly);

/// <summary>A live stream's "summary" event: when <paramref name="Version"/> changes, the dashboard is worth reloading.</summary>
public sealed record ConsoleLiveSummaryDto(string Version, IReadOnlyList<AlertDto> Alerts, int RunningJobs);

/// <summary>A volume's line on the dashboard: size, use, and what protects it.</summary>
public sealed record ConsoleVolumeDto(
    string Name,
    string Kind,
    long SizeBytes,
    long? AllocatedBytes,
    int Snapshots,
    string? LastSnapshot,
    DateTimeOffset? LastSnapshotAt,
    int Exports,
    string? Policy,
    string? ReplicatedTo,
    double? ReplicationLagSeconds)
{
    /// <summary>The snapshot of the volume's newest verification (ADR 0015), whatever its verdict; null: none verified.</summary>
    public string? VerifiedSnapshot { get; init; }

    /// <summary>That verification's verdict, reason, host and time.</summary>
    public SnapshotVerificationDto? Verification { get; init; }
}

public sealed record ConsoleDashboardDto(
    PoolDto Pool,
    IReadOnlyList<ConsoleVolumeDto> Volumes,
    IReadOnlyList<AlertDto> Alerts,
    IReadOnlyList<EventDto> Events,
    IReadOnlyList<CapacitySample> Capacity,
    int RunningJobs)
{
    /// <summary>What the alerts are raised at (the dashboard shows them beside the alerts, and an admin changes them there).</summary>
    public AlertThresholdsDto? Thresholds { get; init; }
}

/// <summary>A volume's I/O rates over the last half hour, oldest first (zeros where it did no I/O).</summary>
public sealed record ConsoleIoHistoryDto(int IntervalSeconds, IReadOnlyList<ConsoleIoSampleDto> Samples);

public sealed record ConsoleIoSampleDto(DateTimeOffset Time, float ReadsPerSecond, float WritesPerSecond, float ReadBytesPerSecond, float WriteBytesPerSecond);

/// <summary>Every replica's lag over the last hour: one shared list of times, one list of lags (seconds) per replicated volume.</summary>
public sealed record ConsoleLagHistoryDto(int IntervalSeconds, IReadOnlyList<DateTimeOffset> Times, IReadOnlyList<ConsoleLagSeriesDto> Replicas);

public sealed record ConsoleLagSeriesDto(string Volume, IReadOnlyList<float> LagSeconds);
