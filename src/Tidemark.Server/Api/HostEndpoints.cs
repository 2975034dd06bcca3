using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Server.Agents;
using Tidemark.Server.Policies;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Api;

/// <summary>The application hosts whose agents this server calls around snapshots (ADR 0015).</summary>
public static class HostEndpoints
{
    public static void MapHostApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1/hosts").WithTags("hosts");
        api.MapGet("/", (HostRegistry hosts) => TypedResults.Ok(hosts.List()));
        api.MapPost("/", (HostRegistry hosts, ServerIdentity identity, AddHostRequest request) =>
        {
            var host = hosts.Add(request, identity.Fingerprint);
            return TypedResults.Created($"/api/v1/hosts/{Uri.EscapeDataString(host.Name)}", host);
        }).WithName("host.add");
        api.MapDelete("/{name}", (HostRegistry hosts, PolicyManager policies, ReplicaManager replicas, string name) =>
        {
            policies.ThrowIfHostUsed(name);
            replicas.ThrowIfHostUsed(name);
            hosts.Remove(name);
            return TypedResults.NoContent();
        }).WithName("host.remove");
        api.MapGet("/{name}/status", async (HostRegistry hosts, ServerIdentity identity, string name, CancellationToken ct) =>
        {
            using var link = new AgentLink(identity, hosts.Get(name), TimeSpan.FromSeconds(10));
            var status = await link.StatusAsync(ct);
            var mounts = await link.MountsAsync(ct);
            return TypedResults.Ok(new HostStatusDto(name, status, mounts));
        }).WithName("host.status");
    }
}
