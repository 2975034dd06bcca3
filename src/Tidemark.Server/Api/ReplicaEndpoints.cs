using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Replication;
using Tidemark.Server.Agents;
using Tidemark.Server.Events;
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
        replicas.MapGet("/{volume}", async (ReplicaManager m, string volume, CancellationToken ct) => TypedResults.Ok(await m.ShowAsync(volume, ct)));
        replicas.MapPost("/", (ReplicaManager m, CreateReplicaRequest request) =>
        {
            var replica = m.Create(request);
            return TypedResults.Created($"/api/v1/replicas/{Uri.EscapeDataString(replica.Volume)}", replica);
        }).WithName("replica.create");
        replicas.MapPatch("/{volume}", (ReplicaManager m, string volume, UpdateReplicaRequest request) => TypedResults.Ok(m.Update(volume, request)))
            .WithName("replica.update");
        replicas.MapDelete("/{volume}", (ReplicaManager m, string volume) =>
        {
            m.Delete(volume);
            return TypedResults.NoContent();
        }).WithName("replica.delete");
        replicas.MapPost("/{volume}/sync", (HttpContext c, ReplicaManager m, JobManager j, string volume, double? wait) =>
        {
            m.Get(volume);
            return JobEndpoints.RunAsyncJob(
                c,
                j,
                "replica.sync",
                volume,
                cancellable: true,
                wait,
                async progress =>
                {
                    progress.Unit = "bytes";
                    return await m.SyncAsync(volume, progress, progress.Cancellation);
                },
                r => TypedResults.Ok((ReplicaDto)r!));
        }).WithName("replica.sync");

        var incoming = app.MapGroup("/api/v1/incoming").WithTags("replicas");
        incoming.MapGet("/", (ReplicaReceiver r) => TypedResults.Ok(r.Incoming));
        incoming.MapGet("/promoted", (ReplicaReceiver r) => TypedResults.Ok(r.Promoted));
        incoming.MapPost("/{volume}/promote", async (ReplicaManager m, string volume, CancellationToken ct) =>
        {
            var (snapshot, note) = await m.PromoteAsync(volume, ct);
            return TypedResults.Ok(new PromoteResultDto(snapshot.ToDto(), note));
        }).WithName("replica.promote");
        incoming.MapPost("/{volume}/accept", (ReplicaReceiver r, PartnerRegistry partners, EventLog events, string volume, AcceptReplicaRequest request) =>
        {
            partners.Get(request.Partner);
            var (record, kept) = r.Accept(volume, request.Partner, request.SourceVolume);
            events.Record("replica.accept", volume, "server", $"{volume} accepted as the target of {request.Partner}'s replica of {record.SourceVolume}; what it held is kept as {kept.Address}");
            return TypedResults.Ok(new AcceptReplicaResultDto(record, kept.ToDto()));
        }).WithName("replica.accept");
        incoming.MapPut("/{volume}/retention", (ReplicaReceiver r, string volume, ReplicaRetentionRequest request) => TypedResults.Ok(r.SetRetention(volume, request.KeepLast)))
            .WithName("replica.retain");
        incoming.MapPost("/{volume}/demote", (ReplicaReceiver r, ReplicaManager m, string volume) =>
        {
            // A replicated group is demoted as one unit, as it is promoted and reversed.
            if (r.FindIncoming(volume) is null && r.GroupMembers(volume) is { Count: > 0 } members)
            {
                var kept = members.Select(member => m.Demote(member)).OfType<SnapshotInfo>().Select(s => s.ToDto()).ToList();
                return TypedResults.Ok(new DemoteResultDto(kept.FirstOrDefault(), members, kept));
            }

            return TypedResults.Ok(new DemoteResultDto(m.Demote(volume)?.ToDto()));
        }).WithName("replica.demote");
        incoming.MapPost("/{volume}/reverse", (HttpContext c, ReplicaReceiver r, ReplicaManager m, JobManager j, string volume, double? wait, string? discardWritesAt) =>
        {
            if (discardWritesAt is not (null or "home"))
            {
                throw new StorageException(StorageError.InvalidArgument, $"discardWritesAt takes 'home' (the site the volume is sent back to), not '{discardWritesAt}'");
            }

            if (r.FindIncoming(volume) is null && r.GroupMembers(volume).Count == 0)
            {
                throw new StorageException(StorageError.NotFound, $"{volume} was not replicated into this server; only a promoted replica can be sent back to its source");
            }

            return JobEndpoints.RunAsyncJob(
                c,
                j,
                "replica.reverse",
                volume,
                cancellable: true,
                wait,
                async progress =>
                {
                    progress.Unit = "bytes";
                    return await m.ReverseAsync(volume, progress, discardWritesAt == "home", progress.Cancellation);
                },
                r => TypedResults.Ok((ReplicaDto)r!));
        }).WithName("replica.reverse");

        app.MapPost($"{PartnerLink.PathPrefix}/groups/commit", (HttpContext context, ReplicaReceiver r, ReplicaManager m, GroupCommitRequest request) =>
        {
            var committed = r.CommitGroup(PartnerOf(context), request);
            if (request.Reverse)
            {
                m.SuspendForFailBack(request.Group.Split('/')[0], PartnerOf(context));
            }

            return TypedResults.Ok(committed.Select(s => s.ToDto()).ToList());
        }).ExcludeFromDescription().WithName("replica.group-commit");
        var link = app.MapGroup($"{PartnerLink.PathPrefix}/volumes/{{volume}}").ExcludeFromDescription();
        link.MapGet("/snapshots", (ReplicaReceiver r, string volume) => TypedResults.Ok(r.Snapshots(volume)));
        link.MapGet("/written-since/{snapshot:guid}", (ReplicaReceiver r, string volume, Guid snapshot) => TypedResults.Ok(r.WrittenSince(volume, snapshot)));
        link.MapGet("/partial", (ReplicaReceiver r, string volume) => r.Partial(volume) is { } p ? Results.Ok(p) : Results.NoContent());
        link.MapPost("/scan", (HttpContext context, ReplicaReceiver r, EventLog events, string volume, bool? seed, bool? reverse, long? generation) =>
            Refusing(events, volume, PartnerOf(context), () => TypedResults.Ok(r.BeginScan(volume, PartnerOf(context), seed == true, reverse == true, generation ?? 0))));
        link.MapGet("/scan/{scanBase:guid}/granules", async (HttpContext context, ReplicaReceiver r, string volume, Guid scanBase, long key) =>
        {
            context.Response.ContentType = "application/octet-stream";
            await r.WriteGranuleHashesAsync(volume, scanBase, key, context.Response.Body, context.RequestAborted);
        });
        link.MapPost("/scan/{scanBase:guid}/blocks", async (HttpContext context, ReplicaReceiver r, string volume, Guid scanBase, long key) =>
        {
            context.Response.ContentType = "application/octet-stream";
            await r.WriteBlockHashesAsync(volume, scanBase, key, context.Request.Body, context.Response.Body, context.RequestAborted);
        });
        link.MapPost("/standby", (HttpContext context, ReplicaReceiver r, string volume, List<CreateExportRequest> exports) =>
        {
            r.SetStandbyExports(volume, PartnerOf(context), exports);
            return TypedResults.NoContent();
        });
        link.MapPost("/demote", (HttpContext context, ReplicaManager m, EventLog events, string volume, long? generation) =>
            Refusing(events, volume, PartnerOf(context), () => TypedResults.Ok(new DemoteResultDto(m.Demote(volume, generation ?? 0)?.ToDto()))));
        link.MapPost("/receive", async (HttpContext context, ReplicaReceiver r, ReplicaManager m, SnapshotCoordinator agents, EventLog events, string volume, long? resume, bool? reverse, string? group, long? generation, bool? discard, string? divergedAfter, long? changedGranules) =>
        {
            context.Features.Get<IHttpMaxRequestBodySizeFeature>()!.MaxRequestBodySize = null;
            var partner = PartnerOf(context);
            if (reverse == true)
            {
                Refusing(events, volume, partner, () => r.CheckGeneration(volume, partner, generation ?? 0));
            }

            try
            {
                StreamImportResult result;
                try
                {
                    result = await SynchronousBody.ReadAsync(context.Request.Body, input => r.Receive(volume, partner, input, resume ?? 0, reverse == true, context.RequestAborted, group, generation ?? 0, discard == true, divergedAfter, changedGranules ?? 0), context.RequestAborted);
                }
                catch (SplitBrainException ex)
                {
                    events.Record("replica.split-brain", volume, $"partner:{partner}", ex.Message, "refused");
                    throw;
                }

                // The snapshot's consistency, sent beside the stream: the copy (same id) shows it here too.
                if (context.Request.Headers[ReplicaManager.ConsistencyHeader] is { Count: 1 } label
                    && agents.AdoptReplicatedLabel(result.Header.SnapshotId, label.ToString()) is { } problem)
                {
                    events.Record("replica.receive", volume, $"partner:{partner}", $"{problem}; the copy of snapshot {result.Header.SnapshotName} shows crash here", "failed");
                }

                if (result.KeptState is { } kept)
                {
                    events.Record("replica.split-brain", volume, $"partner:{partner}", $"fail-back from {partner} discarded the writes made here to {volume} after {(divergedAfter == ReplicaReceiver.UnknownCommon ? "the snapshot both sites last shared" : divergedAfter ?? result.Header.BaseSnapshotName)}; they are kept as {kept.Address}");
                }

                if (result.Snapshot is null)
                {
                    // A group member: complete, waiting for the group's commit. The sender names what
                    // was kept per member, so the body says it here too.
                    return Results.Accepted(value: new GroupMemberReceivedDto(result.KeptState?.ToDto()));
                }

                if (reverse == true)
                {
                    m.SuspendForFailBack(volume, partner);
                }

                return Results.Ok(new StreamImportDto(result.Snapshot!.ToDto(), result.Header.IsIncremental, result.Records, result.DataBytes, result.ZeroBytes, result.KeptState?.ToDto()));
            }
            catch (StreamImportException ex) when (ex.InnerException is StorageException inner)
            {
                throw new StorageException(inner.Error, inner.Message, ex);
            }
        }).WithName("replica.receive");
    }

    /// <summary>
    /// A partner at a stale role generation is refused, and this site's event log says so too (the
    /// refusal must be visible at both ends, not only in the sender's error).
    /// </summary>
    private static T Refusing<T>(EventLog events, string volume, string partner, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (StaleGenerationException ex)
        {
            events.Record("replica.refused", volume, $"partner:{partner}", ex.Message, "refused");
            throw;
        }
    }

    private static void Refusing(EventLog events, string volume, string partner, Action action) =>
        Refusing(events, volume, partner, () =>
        {
            action();
            return 0;
        });

    private static string PartnerOf(HttpContext context) => (context.Items[AuditMiddleware.ActorItem] as string ?? "partner:?")["partner:".Length..];
}
