using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Server.Policies;

namespace Tidemark.Server.Api;

/// <summary>/api/v1/policies: snapshot policies (schedules, changed-data triggers, retention).</summary>
public static class PolicyEndpoints
{
    public static void MapPolicyApi(this IEndpointRouteBuilder app)
    {
        var policies = app.MapGroup("/api/v1/policies").WithTags("policies");
        policies.MapGet("/", (PolicyManager m) => TypedResults.Ok(m.List()));
        policies.MapPost("/", (PolicyManager m, PolicyRequest request) =>
        {
            var policy = m.Create(request);
            return TypedResults.Created($"/api/v1/policies/{Uri.EscapeDataString(request.Name)}", policy);
        }).WithName("policy.create");
        // Changes nothing, but takes a whole policy as its body, hence POST (and operator, like the wizard that uses it).
        policies.MapPost("/preview", (PolicyManager m, PolicyRequest request) => TypedResults.Ok(m.Preview(request))).WithName("policy.preview");
        policies.MapGet("/{name}", (PolicyManager m, string name) => TypedResults.Ok(m.Get(name)));
        policies.MapPut("/{name}", (PolicyManager m, string name, PolicyRequest request) => TypedResults.Ok(m.Update(name, request))).WithName("policy.update");
        policies.MapDelete("/{name}", (PolicyManager m, string name) =>
        {
            m.Delete(name);
            return TypedResults.NoContent();
        }).WithName("policy.delete");
        policies.MapPost("/{name}/run", async (PolicyManager m, string name) => TypedResults.Ok(await m.RunNowAsync(name))).WithName("policy.run");
    }
}
