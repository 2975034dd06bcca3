using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark token`: named API tokens with roles, so the audit log names people.</summary>
public static class TokenCommands
{
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "who or what uses the token (e.g. alice, backup-script); the audit log names it" };
        var role = new Option<string>("--role")
        {
            Description = "admin (everything), operator (day-to-day changes; not deleting volumes, releasing holds, partners, promote/reverse, stores, tokens) or auditor (read-only)",
            Required = true,
        };
        role.AcceptOnlyFromAmong([.. TokenRoles.All]);
        var create = new Command("create", "Create a named token; its secret is printed once (only a hash is kept)") { name, role };
        create.SetClientAction(async (p, client, json, ct) =>
        {
            var created = await client.CreateTokenAsync(new CreateTokenRequest(p.GetValue(name)!, p.GetValue(role)!), ct);
            if (json)
            {
                Output.Json(created);
                return;
            }

            Output.Fields(("name", created.Name), ("role", created.Role), ("secret", created.Secret));
            Console.Error.WriteLine("Store the secret now: it is not shown again. Use it as --token or TIDEMARK_TOKEN.");
        });

        var list = new Command("list", "List the named tokens and their roles (never their secrets)");
        list.SetClientAction(async (_, client, json, ct) =>
        {
            var tokens = await client.ListTokensAsync(ct);
            if (json)
            {
                Output.Json(tokens);
                return;
            }

            Output.Table(["NAME", "ROLE", "CREATED"], tokens.Select(t => (IReadOnlyList<string>)[t.Name, t.Role, Output.Time(t.Created)]));
        });

        var revokeName = new Argument<string>("name") { Description = "the token's name" };
        var revoke = new Command("revoke", "Revoke a token: requests with it are refused from now on") { revokeName };
        revoke.SetClientAction(async (p, client, json, ct) =>
        {
            await client.RevokeTokenAsync(p.GetValue(revokeName)!, ct);
            VolumeCommands.Done(json, $"revoked token {p.GetValue(revokeName)}");
        });

        return new Command("token", "Named API tokens with roles (admin, operator, auditor)") { create, list, revoke };
    }
}
