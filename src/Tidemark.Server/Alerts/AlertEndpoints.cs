using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Agents;
using Tidemark.Server.Api;
using Tidemark.Server.Jobs;
using Tidemark.Server.Policies;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Alerts;

/// <summary>
/// GET /api/v1/alerts: what <see cref="AlertEvaluator"/> finds now (every role may read it);
/// GET/PUT /api/v1/alerts/thresholds: the thresholds it applies (<see cref="AlertSettings"/>; changing
/// them is admin-only, <c>alerts.thresholds</c> in ApiRoles, and audited under that name).
/// </summary>
public static class AlertEndpoints
{
    public static void MapAlertApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/alerts", (AlertEvaluator alerts, Pool pool, PolicyManager policies, ReplicaManager replicas, JobManager jobs, SnapshotVerifier verifier) =>
            TypedResults.Ok(Current(alerts, pool, policies, replicas, jobs, verifier)))
            .Produces<IReadOnlyList<AlertDto>>().WithTags("alerts");
        app.MapGet("/api/v1/alerts/thresholds", (AlertSettings settings) => TypedResults.Ok(settings.Get())).WithTags("alerts");
        app.MapPut("/api/v1/alerts/thresholds", (AlertSettings settings, UpdateAlertThresholdsRequest request) => TypedResults.Ok(settings.Update(request)))
            .WithName("alerts.thresholds").WithTags("alerts");
    }

    /// <summary>The alerts for the server's state right now.</summary>
    public static IReadOnlyList<AlertDto> Current(AlertEvaluator alerts, Pool pool, PolicyManager policies, ReplicaManager replicas, JobManager jobs, SnapshotVerifier verifier) =>
        alerts.Evaluate(pool.GetInfo().ToDto(), policies.List(), replicas.List(), [.. jobs.List().Select(j => j.ToDto())], verifier.NewestPerVolume());
}
