using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Server.Agents;
using Tidemark.Server.Events;
using Tidemark.Server.Jobs;

namespace Tidemark.Server.Api;

/// <summary>
/// <c>POST /api/v1/recoveries/mail</c>: a mail recovery run by the server as a job on a recovery
/// host's agent (docs/adr/0012, <see cref="MailRecoveryRunner"/>). The request is checked before the
/// job starts (unknown host or snapshot: 4xx); the job's result is a <see cref="MailRecoveryResultDto"/>.
/// </summary>
public static class MailRecoveryJobEndpoints
{
    public static void MapMailRecoveryJobApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/v1/recoveries/mail", async (HttpContext c, JobManager jobs, MailRecoveryRunner runner, MailRecoveryJobRequest request, double? wait) =>
        {
            var snapshot = runner.Resolve(request);
            var actor = c.Items[AuditMiddleware.ActorItem] as string ?? "anonymous";

            // The agent knows the run by this id, which the job's cancel passes on.
            var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
            c.Items[AuditMiddleware.DetailItem] = $"mail recovery from {snapshot.Address} on host {request.Host} to {MailRecoveryRunner.Describe(request.Target ?? new MailTargetDto())}";
            return await JobEndpoints.RunAsyncJob(
                c,
                jobs,
                "recovery.mail",
                snapshot.Address,
                cancellable: true,

                // 202 at once unless the caller asks to wait: a recovery takes seconds at least, and
                // one cancelled within an inline wait would come back as that request's failure.
                wait ?? 0,
                async progress => await runner.RunAsync(id, request, snapshot, actor, progress, progress.Cancellation),
                result => TypedResults.Ok((MailRecoveryResultDto)result!));
        }).WithTags("recoveries").WithName("recovery.start");
    }
}
