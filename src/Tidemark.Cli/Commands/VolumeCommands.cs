using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class VolumeCommands
{
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "volume name" };
        var size = new Option<string>("--size") { Description = "virtual size, e.g. 10G", Required = true };
        var blockSize = new Option<int>("--block-size") { Description = "logical block size: 512 or 4096", DefaultValueFactory = _ => 512 };
        var create = new Command("create", "Create a thin volume (no space is used until it is written)") { name, size, blockSize };
        create.SetClientAction(async (p, client, json, ct) =>
            PrintOne(await client.CreateVolumeAsync(new CreateVolumeRequest(p.GetValue(name)!, CommandRunner.ParseVolumeSize(p.GetValue(size)!, "--size"), p.GetValue(blockSize)), ct), json));

        var list = new Command("list", "List volumes and views");
        list.SetClientAction(async (_, client, json, ct) => PrintList(await client.ListVolumesAsync(ct), json));

        var showName = new Argument<string>("name") { Description = "volume or view name" };
        var show = new Command("show", "Show a volume or view") { showName };
        show.SetClientAction(async (p, client, json, ct) => PrintOne(await client.GetVolumeAsync(p.GetValue(showName)!, ct), json));

        var resizeName = new Argument<string>("name") { Description = "volume or view name" };
        var newSize = new Option<string>("--size") { Description = "new virtual size (larger than the current one), e.g. 20G", Required = true };
        var resize = new Command("resize", "Grow a volume online") { resizeName, newSize };
        resize.SetClientAction(async (p, client, json, ct) =>
            PrintOne(await client.ResizeVolumeAsync(p.GetValue(resizeName)!, CommandRunner.ParseVolumeSize(p.GetValue(newSize)!, "--size"), ct), json));

        var deleteName = new Argument<string>("name") { Description = "volume or view name" };
        var delete = new Command("delete", "Delete a volume or view and all its snapshots") { deleteName };
        delete.SetClientAction(async (p, client, json, ct) =>
        {
            await client.DeleteVolumeAsync(p.GetValue(deleteName)!, Output.ProgressBar(json), ct);
            Done(json, $"deleted {p.GetValue(deleteName)}");
        });

        var rollbackVolume = new Argument<string>("volume") { Description = "volume name" };
        var rollbackSnapshot = new Argument<string>("snapshot") { Description = "snapshot name (or VOLUME@SNAPSHOT)" };
        var rollbackForce = new Option<bool>("--force") { Description = "end the NBD connections and iSCSI sessions attached to the volume first (initiators are asked to log out); without it they make the rollback refuse" };
        var rollback = new Command("rollback", "Make the live volume equal to a snapshot (the image before is kept as a pre-rollback snapshot)") { rollbackVolume, rollbackSnapshot, rollbackForce };
        rollback.SetClientAction(async (p, client, json, ct) =>
        {
            var volume = p.GetValue(rollbackVolume)!;
            var snapshot = p.GetValue(rollbackSnapshot)!;
            if (snapshot.Contains('@', StringComparison.Ordinal))
            {
                var (v, s) = CommandRunner.SplitAddress(snapshot);
                snapshot = v == volume ? s : throw new CliException($"{snapshot} is not a snapshot of {volume}");
            }

            var result = await client.RollbackAsync(volume, snapshot, p.GetValue(rollbackForce), ct);
            if (json)
            {
                Output.Json(result);
                return;
            }

            foreach (var ended in result.EndedSessions ?? [])
            {
                Console.Out.WriteLine($"ended {ended.Protocol} session of {(ended.Initiator is { } initiator ? $"{initiator} at " : string.Empty)}{ended.Client}");
            }

            Console.Out.WriteLine($"rolled {volume} back to {volume}@{snapshot}" + (result.PreRollbackSnapshot is { } kept ? $"; the image before is kept as {kept.Address}" : string.Empty));
        });

        return new Command("volume", "Thin volumes and views") { create, list, show, resize, delete, rollback, CapacityCommands.VolumeAutogrow() };
    }

    public static void PrintList(IReadOnlyList<VolumeDto> volumes, bool json)
    {
        if (json)
        {
            Output.Json(volumes);
            return;
        }

        Output.Table(
            ["NAME", "KIND", "SIZE", "ALLOCATED", "BLOCK", "SNAPSHOTS", "ORIGIN", "EXPORTS", "CREATED"],
            volumes.Select(v => (IReadOnlyList<string>)[
                v.Name,
                v.Kind,
                Output.Size(v.SizeBytes),
                v.AllocatedBytes is { } allocated ? Output.Size(allocated) : "-",
                v.LogicalBlockSizeBytes.ToString(CultureInfo.InvariantCulture),
                v.Snapshots.ToString(CultureInfo.InvariantCulture),
                v.Origin ?? "-",
                v.Exports.Count == 0 ? "-" : string.Join(",", v.Exports),
                Output.Time(v.CreatedAt)]));
    }

    public static void PrintOne(VolumeDto v, bool json)
    {
        if (json)
        {
            Output.Json(v);
            return;
        }

        Output.Fields(
            ("name", v.Name),
            ("kind", v.Kind),
            ("size", $"{Output.Size(v.SizeBytes)} ({v.SizeBytes.ToString(CultureInfo.InvariantCulture)} bytes)"),
            ("allocated", v.AllocatedBytes is { } allocated ? $"{Output.Size(allocated)} ({(v.SizeBytes == 0 ? 0 : 100.0 * allocated / v.SizeBytes).ToString("F1", CultureInfo.InvariantCulture)}%)" : "-"),
            ("block size", v.LogicalBlockSizeBytes.ToString(CultureInfo.InvariantCulture)),
            ("snapshots", v.Snapshots.ToString(CultureInfo.InvariantCulture)),
            ("origin", v.Origin ?? "-"),
            ("exports", v.Exports.Count == 0 ? "-" : string.Join(", ", v.Exports)),
            ("created", Output.Time(v.CreatedAt)),
            ("id", v.Id.ToString()));
    }

    public static void Done(bool json, string message)
    {
        if (json)
        {
            Output.Json(new { ok = true, message });
        }
        else
        {
            Console.Out.WriteLine(message);
        }
    }
}
