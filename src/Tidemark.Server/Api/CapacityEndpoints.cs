using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Capacity;

namespace Tidemark.Server.Api;

/// <summary>Capacity on demand: autogrow policies of the pool and of volumes, and a check on request.</summary>
public static class CapacityEndpoints
{
    public static void MapCapacityApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1").WithTags("capacity");
        api.MapGet("/capacity", (CapacityManager c) => TypedResults.Ok(c.Policies));
        api.MapPost("/capacity/check", (CapacityManager c) =>
        {
            c.CheckNow();
            return TypedResults.Ok(c.Policies);
        }).WithName("capacity.check");
        api.MapPut("/pool/autogrow", (CapacityManager c, AutoGrowDto policy) =>
        {
            c.SetPoolPolicy(policy);
            return TypedResults.Ok(c.Policies);
        }).WithName("pool.autogrow");
        api.MapDelete("/pool/autogrow", (CapacityManager c) =>
        {
            c.SetPoolPolicy(null);
            return TypedResults.NoContent();
        }).WithName("pool.autogrow-off");
        api.MapGet("/volumes/{name}/autogrow", (CapacityManager c, Pool p, string name) =>
        {
            p.GetVolume(name);
            return c.VolumePolicy(name) is { } policy
                ? Results.Ok(policy)
                : throw new StorageException(StorageError.NotFound, $"volume {name} has no autogrow policy; set one with 'tidemark volume autogrow {name} --threshold 80 --step 10G --max 1T'");
        });
        api.MapPut("/volumes/{name}/autogrow", (CapacityManager c, string name, AutoGrowDto policy) =>
        {
            c.SetVolumePolicy(name, policy);
            return TypedResults.Ok(policy);
        }).WithName("volume.autogrow");
        api.MapDelete("/volumes/{name}/autogrow", (CapacityManager c, Pool p, string name) =>
        {
            p.GetVolume(name);
            c.SetVolumePolicy(name, null);
            return TypedResults.NoContent();
        }).WithName("volume.autogrow-off");
    }
}
