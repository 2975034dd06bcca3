using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class SnapshotCommands
{
    public static Command Create()
    {
        var volume = new Argument<string>("volume") { Description = "volume or view to snapshot" };
        var name = new Option<string?>("--name") { Description = "snapshot name (default: a timestamp)" };
        var (consistent, fallback) = ConsistencyOptions();
        var create = new Command("create", "Take a snapshot (instant, whatever the volume's size); with --consistent, the hosts' agents quiesce their applications around it") { volume, name, consistent, fallback };
        create.SetClientAction(async (p, client, json, ct) =>
            PrintList([await client.CreateSnapshotAsync(p.GetValue(volume)!, new CreateSnapshotRequest(p.GetValue(name), HostsOf(p, consistent), p.GetValue(fallback)), ct)], json, single: true));

        var listVolume = new Argument<string>("volume") { Description = "volume or view" };
        var list = new Command("list", "List a volume's snapshots") { listVolume };
        list.SetClientAction(async (p, client, json, ct) => PrintList(await client.ListSnapshotsAsync(p.GetValue(listVolume)!, ct), json));

        var showAddress = Address();
        var show = new Command("show", "Show a snapshot and its space") { showAddress };
        show.SetClientAction(async (p, client, json, ct) =>
        {
            var address = Checked(p.GetValue(showAddress)!);
            var snapshot = await client.GetSnapshotAsync(address, ct);
            var usage = await client.GetSnapshotUsageAsync(address, ct);
            if (json)
            {
                Output.Json(new { snapshot, usage });
                return;
            }

            Output.Fields(
                ("snapshot", snapshot.Address),
                ("created", Output.Time(snapshot.CreatedAt)),
                ("size", Output.Size(snapshot.SizeBytes)),
                ("held", Hold(snapshot)),
                ("group", snapshot.GroupSnapshot ?? "-"),
                ("consistency", snapshot.Consistency ?? "crash"),
                ("verification", Verified(snapshot)),
                ("unique", Output.Size(usage.UniqueBytes) + " (freed if deleted)"),
                ("shared", Output.Size(usage.SharedBytes)));
        });

        var labelAddress = Address();
        var label = new Command("backup-label", "Print the PostgreSQL backup label(s) kept with a snapshot taken in backup mode through an agent") { labelAddress };
        label.SetClientAction(async (p, client, json, ct) =>
        {
            var labels = await client.GetBackupLabelsAsync(Checked(p.GetValue(labelAddress)!), ct);
            if (json)
            {
                Output.Json(labels);
                return;
            }

            foreach (var (cluster, text) in labels.Labels)
            {
                Console.WriteLine($"# {cluster}");
                Console.Write(text);
            }
        });

        var verifyAddress = Address();
        var verifyHost = new Option<string>("--host") { Description = "the host whose agent mounts a view of the snapshot and checks it ('host list')", Required = true };
        var verify = new Command("verify", "Prove a snapshot mountable: a host's agent mounts a view of it read-only and runs fsck -n (and PostgreSQL + pg_amcheck for a cluster on it); exit 1 when it fails") { verifyAddress, verifyHost };
        verify.SetClientAction(async (p, client, json, ct) =>
        {
            var snapshot = await client.VerifySnapshotAsync(Checked(p.GetValue(verifyAddress)!), new VerifySnapshotRequest(p.GetValue(verifyHost)!), ct);
            if (json)
            {
                Output.Json(snapshot);
            }
            else
            {
                Output.Fields(("snapshot", snapshot.Address), ("consistency", snapshot.Consistency ?? "crash"), ("verification", Verified(snapshot)), ("host", snapshot.Verification?.Host ?? "-"));
            }

            if (snapshot.Verification?.Verdict == VerifyResultDto.Failed)
            {
                throw new CliException($"{snapshot.Address} failed verification: {snapshot.Verification.Reason}", CommandRunner.Refused);
            }
        });

        var deleteAddress = Address();
        var delete = new Command("delete", "Delete a snapshot and free the blocks only it kept") { deleteAddress };
        delete.SetClientAction(async (p, client, json, ct) =>
        {
            var address = Checked(p.GetValue(deleteAddress)!);
            await client.DeleteSnapshotAsync(address, Output.ProgressBar(json), ct);
            VolumeCommands.Done(json, $"deleted {address}");
        });

        var from = Address();
        var to = new Argument<string?>("to") { Description = "later snapshot VOLUME@SNAPSHOT (default: the live volume)", Arity = ArgumentArity.ZeroOrOne };
        var offset = new Option<int?>("--offset") { Description = "first range to print (one page only)" };
        var limit = new Option<int?>("--limit") { Description = "ranges per page (one page only)" };
        var diff = new Command("diff", "List the byte ranges changed between two snapshots, or a snapshot and the live volume") { from, to, offset, limit };
        diff.SetClientAction(async (p, client, json, ct) =>
        {
            var (volumeName, fromSnapshot) = CommandRunner.SplitAddress(p.GetValue(from)!);
            string? toSnapshot = null;
            if (p.GetValue(to) is { } toAddress)
            {
                var (toVolume, s) = CommandRunner.SplitAddress(toAddress);
                toSnapshot = toVolume == volumeName ? s : throw new CliException($"{toAddress} is not a snapshot of {volumeName}; a diff compares one volume's snapshots");
            }

            await PrintDiffAsync(client, volumeName, fromSnapshot, toSnapshot, p.GetValue(offset), p.GetValue(limit), json, ct);
        });

        var holdAddress = Address();
        var until = new Option<DateTimeOffset?>("--until") { Description = "keep until this time (ISO 8601); a dated hold cannot be shortened" };
        var reason = new Option<string?>("--reason") { Description = "why it is held (shown in lists)" };
        var hold = new Command("hold", "Protect a snapshot from deletion") { holdAddress, until, reason };
        hold.SetClientAction(async (p, client, json, ct) =>
            PrintList([await client.HoldSnapshotAsync(Checked(p.GetValue(holdAddress)!), new HoldRequest(p.GetValue(until), p.GetValue(reason)), ct)], json, single: true));

        var releaseAddress = Address();
        var release = new Command("release", "Release an indefinite hold") { releaseAddress };
        release.SetClientAction(async (p, client, json, ct) =>
            PrintList([await client.ReleaseHoldAsync(Checked(p.GetValue(releaseAddress)!), ct)], json, single: true));

        return new Command("snapshot", "Point-in-time snapshots, addressed VOLUME@SNAPSHOT") { create, list, show, label, verify, delete, diff, hold, release, StreamCommands.Export(), StreamCommands.Import() };
    }

    private static Argument<string> Address() => new("snapshot") { Description = "VOLUME@SNAPSHOT" };

    private static string Checked(string address)
    {
        CommandRunner.SplitAddress(address);
        return address;
    }

    private static string Verified(SnapshotDto s) => s.Verification?.Summary ?? "-";

    private static string Hold(SnapshotDto s) =>
        !s.Held ? "no" : (s.HeldUntilReleased ? "until released" : $"until {Output.Time(s.HoldUntil!.Value)}") + (s.HoldReason is { } r ? $" ({r})" : string.Empty);

    private static void PrintList(IReadOnlyList<SnapshotDto> snapshots, bool json, bool single = false)
    {
        if (json)
        {
            if (single)
            {
                Output.Json(snapshots[0]);
            }
            else
            {
                Output.Json(snapshots);
            }

            return;
        }

        Output.Table(
            ["SNAPSHOT", "CREATED", "SIZE", "HELD", "GROUP", "CONSISTENCY", "VERIFIED"],
            snapshots.Select(s => (IReadOnlyList<string>)[s.Address, Output.Time(s.CreatedAt), Output.Size(s.SizeBytes), Hold(s), s.GroupSnapshot ?? "-", s.Consistency ?? "crash", Verified(s)]));
    }

    /// <summary>--consistent HOST[,HOST] and --fallback, shared by `snapshot create` and `group snapshot` (ADR 0015).</summary>
    public static (Option<string?> Consistent, Option<string?> Fallback) ConsistencyOptions() => (
        new Option<string?>("--consistent") { Description = "hosts whose agents quiesce the application around the cut, comma-separated ('host list')" },
        new Option<string?>("--fallback") { Description = "with --consistent, when an agent cannot quiesce: skip (no snapshot, exit 1; default) or crash (take it, labelled crash)" });

    public static IReadOnlyList<string>? HostsOf(ParseResult p, Option<string?> consistent) =>
        p.GetValue(consistent) is { } hosts ? HostList(hosts) is { Count: > 0 } list ? list : throw new CliException("--consistent needs at least one host name ('tidemark host list')") : null;

    public static IReadOnlyList<string> HostList(string value) =>
        [.. value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];

    private static async Task PrintDiffAsync(TidemarkClient client, string volume, string from, string? to, int? offset, int? limit, bool json, CancellationToken ct)
    {
        DiffPageDto page;
        var ranges = new List<ChangedRangeDto>();
        if (offset is not null || limit is not null)
        {
            page = await client.DiffAsync(volume, from, to, offset ?? 0, limit, ct);
            ranges.AddRange(page.Ranges);
        }
        else
        {
            int? next = 0;
            do
            {
                page = await client.DiffAsync(volume, from, to, next.Value, null, ct);
                ranges.AddRange(page.Ranges);
                next = page.NextOffset;
            }
            while (next is not null);
        }

        if (json)
        {
            Output.Json(page with { Offset = offset ?? 0, Ranges = ranges, NextOffset = offset is null && limit is null ? null : page.NextOffset });
            return;
        }

        Output.Table(
            ["OFFSET", "LENGTH", "OFFSET (BYTES)", "LENGTH (BYTES)"],
            ranges.Select(r => (IReadOnlyList<string>)[Output.Size(r.OffsetBytes), Output.Size(r.LengthBytes), r.OffsetBytes.ToString(CultureInfo.InvariantCulture), r.LengthBytes.ToString(CultureInfo.InvariantCulture)]));
        Console.Out.WriteLine($"{page.TotalRanges.ToString(CultureInfo.InvariantCulture)} range(s), {Output.Size(page.TotalChangedBytes)} changed between {volume}@{from} and {(to is null ? $"{volume} (live)" : $"{volume}@{to}")}");
    }
}
