using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Agents;
using Tidemark.Server.Capacity;
using Tidemark.Server.Events;
using Tidemark.Server.Jobs;
using Tidemark.Server.Policies;

namespace Tidemark.Server.Api;

/// <summary>
/// The REST resources under /api/v1. Handlers are thin: the engine checks names, sizes and states
/// and its errors become problem details in <see cref="Problems"/>; the API adds only what the
/// engine cannot know (exports must be removed before what they serve is deleted).
/// </summary>
public static class Endpoints
{
    public const int DefaultDiffLimit = 1000;

    /// <summary>A page stays a few hundred KiB of JSON at most.</summary>
    public const int MaxDiffLimit = 10_000;

    public static void MapTidemarkApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1");
        MapPool(api.MapGroup("/pool").WithTags("pool"));
        MapVolumes(api.MapGroup("/volumes").WithTags("volumes"));
        MapSnapshots(api.MapGroup("/volumes/{volume}/snapshots").WithTags("snapshots"));
        MapViews(api.MapGroup("/views").WithTags("views"));
        MapGroups(api.MapGroup("/groups").WithTags("groups"));
        MapExports(api.MapGroup("/exports").WithTags("exports"));
    }

    private static void MapPool(RouteGroupBuilder pool)
    {
        pool.MapGet("/", (Pool p) => TypedResults.Ok(p.GetInfo().ToDto()));
        pool.MapPost("/stores", (Pool p, DataDirectory data, AddStoreRequest request) =>
        {
            var path = StoreAdmission.Check(request.Path, data.Root, request.Force);
            try
            {
                p.AddStore(path, request.CapacityBytes);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new StorageException(StorageError.InvalidArgument, $"cannot use {request.Path} as a store: {ex.Message}");
            }

            return TypedResults.Ok(p.GetInfo().ToDto());
        }).WithName("pool.add-store");
        pool.MapPost("/verify", (HttpContext c, Pool p, JobManager j, double? wait) =>
            JobEndpoints.RunAsync(c, j, "pool.verify", null, cancellable: true, wait, progress => p.Verify(progress).ToDto(), r => TypedResults.Ok((VerifyDto)r!)))
            .WithName("pool.verify");
    }

    /// <summary>
    /// Every volume and view; one deleted while the list is built (a recovery's view going right
    /// after its job answered) is left out, rather than failing the whole list with its 404.
    /// </summary>
    private static List<VolumeDto> VolumeList(Pool p, ExportRegistry e)
    {
        var list = new List<VolumeDto>();
        foreach (var volume in p.Volumes)
        {
            try
            {
                list.Add(volume.ToDto(p, e));
            }
            catch (StorageException ex) when (ex.Error == StorageError.NotFound)
            {
                // Gone since the pool listed it.
            }
        }

        return list;
    }

    private static void MapVolumes(RouteGroupBuilder volumes)
    {
        volumes.MapGet("/", (Pool p, ExportRegistry e) => TypedResults.Ok(VolumeList(p, e)));
        volumes.MapPost("/", (Pool p, ExportRegistry e, CreateVolumeRequest request) =>
        {
            var volume = p.CreateVolume(request.Name, request.SizeBytes, request.LogicalBlockSizeBytes);
            return TypedResults.Created($"/api/v1/volumes/{Uri.EscapeDataString(volume.Name)}", volume.ToDto(p, e));
        }).WithName("volume.create");
        volumes.MapGet("/{name}", (Pool p, ExportRegistry e, string name) => TypedResults.Ok(p.GetVolume(name).ToDto(p, e)));
        volumes.MapPost("/{name}/resize", (Pool p, ExportRegistry e, string name, ResizeVolumeRequest request) =>
        {
            p.ResizeVolume(name, request.SizeBytes);
            return TypedResults.Ok(p.GetVolume(name).ToDto(p, e));
        }).WithName("volume.resize");
        volumes.MapDelete("/{name}", (HttpContext c, Pool p, ExportRegistry e, ClientSessions sessions, JobManager j, CapacityManager capacity, PolicyManager policies, RecoveryViews recoveries, EventLog events, string name, double? wait) =>
        {
            p.GetVolume(name);
            e.ThrowIfExported(e.ExportsOfVolume(name), $"volume {name} (or one of its snapshots)");

            // A session keeps its device after its export is removed (until it disconnects).
            sessions.ThrowIfVolumeOrSnapshotsAttached(name, $"deleting {name}");
            policies.ThrowIfTargeted(volume: name);
            capacity.Forget(name);
            var actor = (string)c.Items[AuditMiddleware.ActorItem]!;
            return JobEndpoints.RunAsync(c, j, "volume.delete", name, cancellable: false, wait, progress => Run(() => DeleteVolume(p, recoveries, events, actor, name, progress)), _ => TypedResults.NoContent());
        }).WithName("volume.delete");
        volumes.MapPost("/{name}/rollback", async (HttpContext c, Pool p, ExportRegistry e, ClientSessions sessions, string name, RollbackRequest request, CancellationToken ct) =>
        {
            // Checked before any session is ended: a typo must not disconnect anyone.
            var snapshot = StripVolume(name, request.Snapshot);
            p.GetSnapshot($"{name}@{snapshot}");
            var operation = $"rolling {name} back to {name}@{snapshot}";
            var ended = request.Force ? await sessions.EndAsync(name, operation + " (--force)", ClientSessions.DefaultLogoutGrace, ct) : null;

            // Again after ending them: a client may have connected meanwhile.
            sessions.ThrowIfAttached(name, operation);
            var kept = p.Rollback(name, snapshot);
            c.Items[AuditMiddleware.DetailItem] = $"rolled {name} back to {name}@{snapshot}; " + (kept is null
                ? "nothing was written since, so no pre-rollback snapshot was needed"
                : $"the state before the rollback is kept as {kept.Address}")
                + (ended is { Count: > 0 } ? $"; ended {ended.Count} client session(s) first (--force)" : "");
            return TypedResults.Ok(new RollbackResult(p.GetVolume(name).ToDto(p, e), kept?.ToDto(), ended));
        }).WithName("volume.rollback");
        volumes.MapGet("/{name}/diff", Diff);
    }

    private static Ok<DiffPageDto> Diff(Pool p, string name, string from, string? to, int? offset, int? limit)
    {
        var start = offset ?? 0;
        var count = limit ?? DefaultDiffLimit;
        if (start < 0)
        {
            throw new StorageException(StorageError.InvalidArgument, $"offset must be 0 or more, not {start}");
        }

        if (count is < 1 or > MaxDiffLimit)
        {
            throw new StorageException(StorageError.InvalidArgument, $"limit must be between 1 and {MaxDiffLimit}, not {count}");
        }

        var ranges = p.Diff(name, StripVolume(name, from), to is null ? null : StripVolume(name, to));
        var page = ranges.Skip(start).Take(count).Select(r => new ChangedRangeDto(r.OffsetBytes, r.LengthBytes)).ToList();
        int? next = start + page.Count < ranges.Count ? start + page.Count : null;
        return TypedResults.Ok(new DiffPageDto(name, from, to, start, ranges.Count, ranges.Sum(r => r.LengthBytes), page, next));
    }

    /// <summary>
    /// The snapshots go with the volume: each gets its own event, so the audit log says what was
    /// destroyed. A recovery's view (deleted by its recovery through here) loses its mark with it.
    /// </summary>
    private static void DeleteVolume(Pool p, RecoveryViews recoveries, EventLog events, string actor, string name, OperationProgress progress)
    {
        var snapshots = p.ListSnapshots(name).Select(s => s.Address).ToList();
        p.DeleteVolume(name, progress);
        recoveries.Forget(name);
        foreach (var address in snapshots)
        {
            events.Record("snapshot.delete", address, actor, $"destroyed with volume {name}");
        }
    }

    private static object? Run(Action action)
    {
        action();
        return null;
    }

    /// <summary>Accepts "snap" or "volume@snap" for a snapshot of <paramref name="volume"/>.</summary>
    private static string StripVolume(string volume, string snapshot)
    {
        var at = snapshot.IndexOf('@', StringComparison.Ordinal);
        if (at < 0)
        {
            return snapshot;
        }

        if (snapshot[..at] != volume)
        {
            throw new StorageException(StorageError.InvalidArgument, $"'{snapshot}' is a snapshot of another volume; a diff compares two snapshots of {volume}");
        }

        return snapshot[(at + 1)..];
    }

    private static void MapSnapshots(RouteGroupBuilder snapshots)
    {
        snapshots.MapGet("/", (Pool p, SnapshotCoordinator agents, SnapshotVerifier verifier, string volume) =>
        {
            var consistency = agents.Consistencies();
            var verified = verifier.Verifications();
            return TypedResults.Ok(p.ListSnapshots(volume).Select(s => s.ToDto(consistency.GetValueOrDefault(s.Id), verified.GetValueOrDefault(s.Id))).ToList());
        });
        snapshots.MapPost("/{snapshot}/verify", async (HttpContext c, Pool p, SnapshotCoordinator agents, SnapshotVerifier verifier, string volume, string snapshot, VerifySnapshotRequest? request, CancellationToken ct) =>
        {
            if (string.IsNullOrEmpty(request?.Host))
            {
                throw new StorageException(StorageError.InvalidArgument, "a verification needs the host whose agent mounts and checks the view ('--host NAME'; 'tidemark host list' shows them)");
            }

            var record = await verifier.VerifyAsync($"{volume}@{snapshot}", request.Host, (string)c.Items[AuditMiddleware.ActorItem]!, ct);
            var found = p.GetSnapshot($"{volume}@{snapshot}");
            c.Items[AuditMiddleware.DetailItem] = $"verification: {SnapshotVerifier.ToDto(record).Summary}";
            return TypedResults.Ok(found.ToDto(agents.ConsistencyOf(found.Id), record));
        }).WithName("snapshot.verify");
        snapshots.MapPost("/", async (HttpContext c, Pool p, SnapshotCoordinator agents, string volume, CreateSnapshotRequest? request, CancellationToken ct) =>
        {
            var name = string.IsNullOrEmpty(request?.Name) ? null : request.Name;
            SnapshotInfo snapshot;
            ConsistencyRecord? consistency = null;
            if (request?.Hosts is { Count: > 0 } hosts)
            {
                var taken = await ConsistentAsync(c, agents, volume, null, name, hosts, request.Fallback, ct);
                (snapshot, consistency) = (taken.Snapshots[0], taken.Consistency);
            }
            else
            {
                snapshot = p.CreateSnapshot(volume, name);
            }

            return TypedResults.Created($"/api/v1/volumes/{Uri.EscapeDataString(volume)}/snapshots/{Uri.EscapeDataString(snapshot.Name)}", snapshot.ToDto(consistency));
        }).WithName("snapshot.create");
        snapshots.MapGet("/{snapshot}/backup-label", (Pool p, SnapshotCoordinator agents, string volume, string snapshot) =>
        {
            var found = p.GetSnapshot($"{volume}@{snapshot}");
            return agents.ConsistencyOf(found.Id)?.BackupLabels is { Count: > 0 } labels
                ? TypedResults.Ok(new BackupLabelsDto(found.Address, labels))
                : throw new StorageException(StorageError.NotFound, $"{found.Address} has no backup label: no PostgreSQL cluster was in backup mode for it (a snapshot through an agent with a postgres entry has one)");
        });
        snapshots.MapGet("/{snapshot}", (Pool p, SnapshotCoordinator agents, SnapshotVerifier verifier, string volume, string snapshot) =>
        {
            var found = p.GetSnapshot($"{volume}@{snapshot}");
            return TypedResults.Ok(found.ToDto(agents.ConsistencyOf(found.Id), verifier.VerificationOf(found.Id)));
        });
        snapshots.MapDelete("/{snapshot}", (HttpContext c, Pool p, ExportRegistry e, ClientSessions sessions, JobManager j, string volume, string snapshot, double? wait) =>
        {
            var address = $"{volume}@{snapshot}";
            p.GetSnapshot(address);
            e.ThrowIfExported(e.ExportsOfTarget(address), $"snapshot {address}");
            sessions.ThrowIfAttached(address, $"deleting {address}", canForce: false);
            return JobEndpoints.RunAsync(c, j, "snapshot.delete", address, cancellable: false, wait, progress => Run(() => p.DeleteSnapshot(address, progress)), _ => TypedResults.NoContent());
        }).WithName("snapshot.delete");
        snapshots.MapPost("/{snapshot}/hold", (Pool p, string volume, string snapshot, HoldRequest? request) =>
        {
            RequestLimits.ThrowIfTooLong(request?.Reason, "the hold's reason");
            return TypedResults.Ok(p.HoldSnapshot($"{volume}@{snapshot}", request?.Until, request?.Reason).ToDto());
        }).WithName("snapshot.hold");
        snapshots.MapPost("/{snapshot}/release", (Pool p, string volume, string snapshot) =>
            TypedResults.Ok(p.ReleaseHold($"{volume}@{snapshot}").ToDto())).WithName("snapshot.release");
        snapshots.MapGet("/{snapshot}/usage", (Pool p, string volume, string snapshot) =>
        {
            var address = $"{volume}@{snapshot}";
            var usage = p.GetSnapshotUsage(address);
            return TypedResults.Ok(new SnapshotUsageDto(address, usage.UniqueBytes, usage.SharedBytes));
        });
    }

    /// <summary>A snapshot with agents quiesced (ADR 0015); a manual one skips by default when an agent cannot quiesce.</summary>
    private static async Task<(IReadOnlyList<SnapshotInfo> Snapshots, ConsistencyRecord Consistency)> ConsistentAsync(
        HttpContext c, SnapshotCoordinator agents, string? volume, string? group, string? name, IReadOnlyList<string> hosts, string? fallback, CancellationToken ct)
    {
        var result = await agents.TakeAsync(volume, group, name, hosts, SnapshotCoordinator.CheckFallback(fallback, SnapshotCoordinator.FallbackSkip), (string)c.Items[AuditMiddleware.ActorItem]!, ct);
        c.Items[AuditMiddleware.DetailItem] = $"consistency: {result.Consistency.Label}";

        // Queued, not awaited (docs/adr/0012): hosts with a mail store on the volume index it in the background.
        c.RequestServices.GetService<MailIndexer>()?.Enqueue(result.Snapshots, hosts, (string)c.Items[AuditMiddleware.ActorItem]!);
        return result;
    }

    private static void MapViews(RouteGroupBuilder views)
    {
        views.MapPost("/", (HttpContext c, Pool p, ExportRegistry e, RecoveryViews recoveries, CreateViewRequest request) =>
        {
            var view = request.Purpose switch
            {
                null => p.CreateView(request.Snapshot, request.Name),
                CreateViewRequest.RecoveryPurpose => recoveries.Create(request.Snapshot, request.Name, $"recovery by {c.Items[AuditMiddleware.ActorItem]}"),
                _ => throw new StorageException(StorageError.InvalidArgument, $"a view's purpose is '{CreateViewRequest.RecoveryPurpose}' (a recovery's throwaway view, deleted at the server's next start if a stop interrupted the recovery) or none, not '{request.Purpose}'"),
            };
            return TypedResults.Created($"/api/v1/volumes/{Uri.EscapeDataString(view.Name)}", view.ToDto(p, e));
        }).WithName("view.create");
        views.MapPost("/{name}/promote", (Pool p, ExportRegistry e, RecoveryViews recoveries, string name) =>
        {
            p.PromoteView(name);
            recoveries.Forget(name); // kept on purpose now
            return TypedResults.Ok(p.GetVolume(name).ToDto(p, e));
        }).WithName("view.promote");
    }

    private static void MapGroups(RouteGroupBuilder groups)
    {
        groups.MapGet("/", (Pool p) => TypedResults.Ok(p.Groups.Select(g => g.ToDto()).ToList()));
        groups.MapPost("/", (Pool p, CreateGroupRequest request) =>
        {
            var group = p.CreateGroup(request.Name, request.Volumes);
            return TypedResults.Created($"/api/v1/groups/{Uri.EscapeDataString(group.Name)}", group.ToDto());
        }).WithName("group.create");
        groups.MapDelete("/{name}", (Pool p, PolicyManager policies, string name) =>
        {
            policies.ThrowIfTargeted(group: name);
            p.DeleteGroup(name);
            return TypedResults.NoContent();
        }).WithName("group.delete");
        groups.MapPost("/{name}/snapshots", async (HttpContext c, Pool p, SnapshotCoordinator agents, string name, CreateSnapshotRequest? request, CancellationToken ct) =>
        {
            var snapshotName = string.IsNullOrEmpty(request?.Name) ? null : request.Name;
            if (request?.Hosts is { Count: > 0 } hosts)
            {
                var (snapshots, consistency) = await ConsistentAsync(c, agents, null, name, snapshotName, hosts, request.Fallback, ct);
                return TypedResults.Ok(snapshots.Select(s => s.ToDto(consistency)).ToList());
            }

            return TypedResults.Ok(p.SnapshotGroup(name, snapshotName).Select(s => s.ToDto()).ToList());
        }).WithName("group.snapshot");
        groups.MapPost("/{name}/snapshots/{snapshot}/verify", async (HttpContext c, Pool p, SnapshotCoordinator agents, SnapshotVerifier verifier, string name, string snapshot, VerifySnapshotRequest? request, CancellationToken ct) =>
        {
            if (string.IsNullOrEmpty(request?.Host))
            {
                throw new StorageException(StorageError.InvalidArgument, "a verification needs the host whose agent mounts and checks the views ('--host NAME'; 'tidemark host list' shows them)");
            }

            // Every member's snapshot of the cut, checked together (data and WAL of one cluster on two volumes).
            var records = await verifier.VerifyGroupAsync(name, snapshot, [request.Host], (string)c.Items[AuditMiddleware.ActorItem]!, ct);
            var members = p.Groups.First(g => g.Name == name).Volumes.Select(v => p.GetSnapshot($"{v}@{snapshot}")).ToList();
            c.Items[AuditMiddleware.DetailItem] = $"verification: {SnapshotVerifier.ToDto(records[0]).Summary}";
            return TypedResults.Ok(members.Select((s, i) => s.ToDto(agents.ConsistencyOf(s.Id), records[i])).ToList());
        }).WithName("group.verify");
    }

    private static void MapExports(RouteGroupBuilder exports)
    {
        exports.MapGet("/", (ExportRegistry e) => TypedResults.Ok(e.List()));
        exports.MapPost("/", (ExportRegistry e, CreateExportRequest request) =>
        {
            var export = e.Create(request);
            return TypedResults.Created($"/api/v1/exports/{Uri.EscapeDataString(export.Name)}", export);
        }).WithName("export.create");
        exports.MapDelete("/{name}", (ExportRegistry e, string name) =>
        {
            e.Delete(name);
            return TypedResults.NoContent();
        }).WithName("export.delete");
    }
}
