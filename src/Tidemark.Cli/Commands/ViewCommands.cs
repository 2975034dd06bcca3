using System.CommandLine;

namespace Tidemark.Cli.Commands;

public static class ViewCommands
{
    public static Command Create()
    {
        var snapshot = new Argument<string>("snapshot") { Description = "VOLUME@SNAPSHOT to clone" };
        var name = new Option<string>("--name") { Description = "name of the new view", Required = true };
        var create = new Command("create", "Create a writable view of a snapshot (instant; shares every block until written)") { snapshot, name };
        create.SetClientAction(async (p, client, json, ct) =>
        {
            CommandRunner.SplitAddress(p.GetValue(snapshot)!);
            VolumeCommands.PrintOne(await client.CreateViewAsync(p.GetValue(snapshot)!, p.GetValue(name)!, ct), json);
        });

        var promoteName = new Argument<string>("view") { Description = "view name" };
        var promote = new Command("promote", "Make a view an independent volume (its origin can then be deleted)") { promoteName };
        promote.SetClientAction(async (p, client, json, ct) => VolumeCommands.PrintOne(await client.PromoteViewAsync(p.GetValue(promoteName)!, ct), json));

        var list = new Command("list", "List views");
        list.SetClientAction(async (_, client, json, ct) =>
            VolumeCommands.PrintList([.. (await client.ListVolumesAsync(ct)).Where(v => v.Kind == "view")], json));

        var deleteName = new Argument<string>("view") { Description = "view name" };
        var delete = new Command("delete", "Delete a view") { deleteName };
        delete.SetClientAction(async (p, client, json, ct) =>
        {
            await client.DeleteVolumeAsync(p.GetValue(deleteName)!, Output.ProgressBar(json), ct);
            VolumeCommands.Done(json, $"deleted {p.GetValue(deleteName)}");
        });

        return new Command("view", "Writable views of snapshots") { create, promote, list, delete };
    }
}
