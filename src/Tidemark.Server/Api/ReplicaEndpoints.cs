using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Replication;
using Tidemark.Server.Jobs;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Api;

/// <summary>Replicas (API side: create, list, sync as a job, delete) and the receiving end on the partner link.</summary>
public static class ReplicaEndpoints
{
    public static void MapReplicaApi(this IEndpointRouteBuilder app)
    {
        var replicas = app.MapGroup("/api/v1/replicas").WithTags("replicas");
        replicas.MapGet("/", (ReplicaManager m) => TypedResults.Ok(m.List()));
        replicas.MapGet("/{volume}", (ReplicaManager m, string volume) => TypedResults.Ok(m.Get(volume)));
        replicas.MapPost("/", (ReplicaManager m, CreateReplicaRequest request) =>
        {
            var replica = m.Create(request);
            return TypedResults.Created($"/api/v1/replicas/{Uri.EscapeDataString(replica.Volume)}", replica);
        }).WithName("replica.create");
        replicas.MapDelete("/{volume}", (ReplicaManager m, string volume) =>
        {
            m.Delete(volume);
            return TypedResults.NoContent();
        }).WithName("replica.delete");
        replicas.MapPost("/{volume}/sync", (HttpContext c, ReplicaManager m, JobManager j, string volume, double? wait) =>
        {
            m.Get(volume);
            return JobEndpoints.RunAsync(
                c,
                j,
                "replica.sync",
                volume,
                cancellable: true,
                wait,
                progress =>
                {
                    progress.Unit = "bytes";
                    return m.SyncAsync(volume, progress, progress.Cancellation).GetAwaiter().GetResult();
                },
                r => TypedResults.Ok((ReplicaDto)r!));
        }).WithName("replica.sync");

        app.MapPost("/api/v1/incoming/{volume}/promote", (ReplicaReceiver r, string volume) => TypedResults.Ok(r.Promote(volume).ToDto()))
            .WithName("replica.promote").WithTags("replicas");
        app.MapGet("/api/v1/incoming/promoted", (ReplicaReceiver r) => TypedResults.Ok(r.Promoted)).WithTags("replicas");

        var link = app.MapGroup($"{PartnerLink.PathPrefix}/volumes/{{volume}}").ExcludeFromDescription();
        link.MapGet("/snapshots", (ReplicaReceiver r, string volume) => TypedResults.Ok(r.Snapshots(volume)));
        link.MapGet("/partial", (ReplicaReceiver r, string volume) => r.Partial(volume) is { } p ? Results.Ok(p) : Results.NoContent());
        link.MapPost("/receive", async (HttpContext context, ReplicaReceiver r, string volume, long? resume) =>
        {
            context.Features.Get<IHttpMaxRequestBodySizeFeature>()!.MaxRequestBodySize = null;
            context.Features.Get<IHttpBodyControlFeature>()!.AllowSynchronousIO = true;
            try
            {
                var result = await Task.Run(() => r.Receive(volume, context.Request.Body, resume ?? 0, context.RequestAborted), context.RequestAborted);
                return Results.Ok(new StreamImportDto(result.Snapshot!.ToDto(), result.Header.IsIncremental, result.Records, result.DataBytes, result.ZeroBytes));
            }
            catch (StreamImportException ex) when (ex.InnerException is StorageException inner)
            {
                throw new StorageException(inner.Error, inner.Message, ex);
            }
        }).WithName("replica.receive");
    }
}
