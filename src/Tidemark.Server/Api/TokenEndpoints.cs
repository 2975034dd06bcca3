using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;

namespace Tidemark.Server.Api;

/// <summary>/api/v1/tokens: named tokens with roles (admin creates and revokes; every role may list).</summary>
public static class TokenEndpoints
{
    public static void MapTokenApi(this IEndpointRouteBuilder app)
    {
        var tokens = app.MapGroup("/api/v1/tokens").WithTags("tokens");
        tokens.MapGet("/", (TokenStore t) => TypedResults.Ok(t.List()));
        tokens.MapPost("/", (TokenStore t, CreateTokenRequest request) =>
        {
            var created = t.Create(request.Name, request.Role);
            return TypedResults.Created($"/api/v1/tokens/{Uri.EscapeDataString(created.Name)}", created);
        }).WithName("token.create");
        tokens.MapDelete("/{name}", (TokenStore t, string name) =>
        {
            t.Revoke(name);
            return TypedResults.NoContent();
        }).WithName("token.revoke");
    }
}
