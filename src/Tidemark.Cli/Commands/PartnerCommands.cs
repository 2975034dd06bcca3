using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark partner`: pairing servers for replication (each side adds the other by fingerprint).</summary>
public static class PartnerCommands
{
    public static Command Create()
    {
        var identity = new Command("identity", "Show this server's replication fingerprint and address (give them to the partner's 'partner add')");
        identity.SetClientAction(async (_, client, json, ct) =>
        {
            var id = await client.GetIdentityAsync(ct);
            if (json)
            {
                Output.Json(id);
                return;
            }

            Output.Fields(("fingerprint", id.Fingerprint), ("replication", id.ReplicationAddress ?? "off"), ("pool", id.PoolId.ToString()));
        });

        var name = new Argument<string>("name") { Description = "a name for the partner, e.g. dr-site" };
        var address = new Argument<string>("address") { Description = "the partner's replication address IP:PORT ('partner identity' there)" };
        var fingerprint = new Option<string>("--fingerprint") { Description = "the partner's fingerprint ('partner identity' there)", Required = true };
        var add = new Command("add", "Pair with another server: it may then replicate to and from this one (do the same there)") { name, address, fingerprint };
        add.SetClientAction(async (p, client, json, ct) =>
            Print([await client.AddPartnerAsync(new AddPartnerRequest(p.GetValue(name)!, p.GetValue(address)!, p.GetValue(fingerprint)!), ct)], json));

        var list = new Command("list", "List paired servers");
        list.SetClientAction(async (_, client, json, ct) => Print(await client.ListPartnersAsync(ct), json));

        var removeName = new Argument<string>("name") { Description = "partner name" };
        var remove = new Command("remove", "Unpair: its connections are refused from now on") { removeName };
        remove.SetClientAction(async (p, client, json, ct) =>
        {
            await client.RemovePartnerAsync(p.GetValue(removeName)!, ct);
            VolumeCommands.Done(json, $"removed partner {p.GetValue(removeName)}");
        });

        var testName = new Argument<string>("name") { Description = "partner name" };
        var test = new Command("test", "Connect to a partner over the replication link and show its answer") { testName };
        test.SetClientAction(async (p, client, json, ct) =>
        {
            var hello = await client.TestPartnerAsync(p.GetValue(testName)!, ct);
            if (json)
            {
                Output.Json(hello);
                return;
            }

            Output.Fields(("partner", p.GetValue(testName)!), ("fingerprint", hello.Fingerprint), ("pool", hello.PoolId.ToString()), ("version", hello.Version), ("its time", Output.Time(hello.Time)));
        });

        return new Command("partner", "Servers paired for replication") { identity, add, list, remove, test };
    }

    private static void Print(IReadOnlyList<PartnerDto> partners, bool json)
    {
        if (json)
        {
            Output.Json(partners.Count == 1 ? partners[0] : (object)partners);
            return;
        }

        Output.Table(["PARTNER", "ADDRESS", "FINGERPRINT", "ADDED"], partners.Select(p => (IReadOnlyList<string>)[p.Name, p.Address, p.Fingerprint, Output.Time(p.AddedAt)]));
    }
}
