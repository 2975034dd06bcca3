using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class GroupCommands
{
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "group name" };
        var volumes = new Argument<string[]>("volumes") { Description = "member volumes", Arity = ArgumentArity.OneOrMore };
        var create = new Command("create", "Create a group of volumes snapshotted together") { name, volumes };
        create.SetClientAction(async (p, client, json, ct) => Print([await client.CreateGroupAsync(new CreateGroupRequest(p.GetValue(name)!, p.GetValue(volumes)!), ct)], json));

        var list = new Command("list", "List groups");
        list.SetClientAction(async (_, client, json, ct) => Print(await client.ListGroupsAsync(ct), json));

        var snapshotGroup = new Argument<string>("name") { Description = "group name" };
        var snapshotName = new Option<string?>("--name") { Description = "snapshot name for every member (default: a timestamp)" };
        var (consistent, fallback) = SnapshotCommands.ConsistencyOptions();
        var snapshot = new Command("snapshot", "Snapshot every member at one consistent instant; with --consistent, the hosts' agents quiesce their applications around it") { snapshotGroup, snapshotName, consistent, fallback };
        snapshot.SetClientAction(async (p, client, json, ct) =>
        {
            var snapshots = await client.SnapshotGroupAsync(p.GetValue(snapshotGroup)!, new CreateSnapshotRequest(p.GetValue(snapshotName), SnapshotCommands.HostsOf(p, consistent), p.GetValue(fallback)), ct);
            if (json)
            {
                Output.Json(snapshots);
                return;
            }

            Output.Table(["SNAPSHOT", "CREATED", "SIZE", "CONSISTENCY"], snapshots.Select(s => (IReadOnlyList<string>)[s.Address, Output.Time(s.CreatedAt), Output.Size(s.SizeBytes), s.Consistency ?? "crash"]));
        });

        var deleteName = new Argument<string>("name") { Description = "group name" };
        var delete = new Command("delete", "Delete a group (its volumes and snapshots stay)") { deleteName };
        delete.SetClientAction(async (p, client, json, ct) =>
        {
            await client.DeleteGroupAsync(p.GetValue(deleteName)!, ct);
            VolumeCommands.Done(json, $"deleted group {p.GetValue(deleteName)}");
        });

        return new Command("group", "Consistency groups") { create, list, snapshot, delete };
    }

    private static void Print(IReadOnlyList<GroupDto> groups, bool json)
    {
        if (json)
        {
            Output.Json(groups.Count == 1 ? groups[0] : (object)groups);
            return;
        }

        Output.Table(["GROUP", "VOLUMES", "CREATED"], groups.Select(g => (IReadOnlyList<string>)[g.Name, string.Join(",", g.Volumes), Output.Time(g.CreatedAt)]));
    }
}
