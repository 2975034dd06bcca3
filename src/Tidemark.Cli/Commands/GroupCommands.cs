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

        var verifyGroup = new Argument<string>("name") { Description = "group name" };
        var verifySnapshot = new Argument<string>("snapshot") { Description = "the snapshot name every member of the cut carries" };
        var verifyHost = new Option<string>("--host") { Description = "the host whose agent mounts views of the members and checks them ('host list')", Required = true };
        var verify = new Command("verify", "Prove a group's snapshot mountable: a host's agent mounts views of every member together (a PostgreSQL cluster with data and WAL on two volumes starts on the pair) and checks them; the verdict goes on every member's snapshot; exit 1 when it fails") { verifyGroup, verifySnapshot, verifyHost };
        verify.SetClientAction(async (p, client, json, ct) =>
        {
            var snapshots = await client.VerifyGroupSnapshotAsync(p.GetValue(verifyGroup)!, p.GetValue(verifySnapshot)!, new VerifySnapshotRequest(p.GetValue(verifyHost)!), ct);
            if (json)
            {
                Output.Json(snapshots);
            }
            else
            {
                Output.Table(["SNAPSHOT", "CONSISTENCY", "VERIFIED"], snapshots.Select(s => (IReadOnlyList<string>)[s.Address, s.Consistency ?? "crash", s.Verification?.Summary ?? "-"]));
            }

            if (snapshots.FirstOrDefault(s => s.Verification?.Verdict == VerifyResultDto.Failed) is { } failed)
            {
                throw new CliException($"group {p.GetValue(verifyGroup)}@{p.GetValue(verifySnapshot)} failed verification: {failed.Verification!.Reason}", CommandRunner.Refused);
            }
        });

        var deleteName = new Argument<string>("name") { Description = "group name" };
        var delete = new Command("delete", "Delete a group (its volumes and snapshots stay)") { deleteName };
        delete.SetClientAction(async (p, client, json, ct) =>
        {
            await client.DeleteGroupAsync(p.GetValue(deleteName)!, ct);
            VolumeCommands.Done(json, $"deleted group {p.GetValue(deleteName)}");
        });

        return new Command("group", "Consistency groups") { create, list, snapshot, verify, delete };
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
