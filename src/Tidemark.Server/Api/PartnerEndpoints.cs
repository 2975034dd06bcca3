using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Api;

/// <summary>Pairing (API side) and the replication listener's own resources.</summary>
public static class PartnerEndpoints
{
    public static void MapPartnerApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1").WithTags("partners");
        api.MapGet("/identity", (ServerIdentity identity, ReplicationEndpoint endpoint, Pool pool) =>
            TypedResults.Ok(new IdentityDto(identity.Fingerprint, endpoint.Address, pool.Id)));
        api.MapGet("/partners", (PartnerRegistry partners) => TypedResults.Ok(partners.List()));
        api.MapPost("/partners", (PartnerRegistry partners, ServerIdentity identity, AddPartnerRequest request) =>
        {
            var partner = partners.Add(request, identity.Fingerprint);
            return TypedResults.Created($"/api/v1/partners/{Uri.EscapeDataString(partner.Name)}", partner);
        }).WithName("partner.add");
        api.MapDelete("/partners/{name}", (PartnerRegistry partners, string name) =>
        {
            partners.Remove(name);
            return TypedResults.NoContent();
        }).WithName("partner.remove");
        api.MapPost("/partners/{name}/test", async (PartnerRegistry partners, ServerIdentity identity, string name, CancellationToken ct) =>
        {
            var partner = partners.Get(name);
            using var http = PartnerLink.Create(identity, partner, TimeSpan.FromSeconds(15));
            try
            {
                var hello = await http.GetFromJsonAsync<PartnerHelloDto>($"{PartnerLink.PathPrefix.TrimStart('/')}/hello", ApiJson.Options, ct);
                return TypedResults.Ok(hello);
            }
            catch (HttpRequestException ex)
            {
                throw new StorageException(StorageError.Unavailable, $"partner {name} at {partner.Address} did not answer over the replication link ({ex.Message}); check that it runs, that its replication listener is reachable, and that it paired with this server too ('tidemark partner add' there with fingerprint {identity.Fingerprint})");
            }
        }).WithName("partner.test");

        var link = app.MapGroup(PartnerLink.PathPrefix).WithTags("replication").ExcludeFromDescription();
        link.MapGet("/hello", (ServerIdentity identity, Pool pool, TimeProvider time) =>
            TypedResults.Ok(new PartnerHelloDto(identity.Fingerprint, pool.Id, typeof(PartnerEndpoints).Assembly.GetName().Version?.ToString() ?? "0", time.GetUtcNow())));
    }
}

/// <summary>Where the replication listener is bound (null when it is off).</summary>
public sealed class ReplicationEndpoint
{
    public string? Address { get; set; }
}
