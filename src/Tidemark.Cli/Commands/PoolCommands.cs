using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class PoolCommands
{
    public static Command Create()
    {
        var info = new Command("info", "Show the pool's capacity, use and stores");
        info.SetClientAction(async (_, client, json, ct) => Print(await client.GetPoolAsync(ct), json));

        var path = new Argument<string>("path") { Description = "file to create (sparse; a relative path is under the server's data directory), block device to use, or rados:POOL[/PREFIX] for objects in a Ceph RADOS pool" };
        var capacity = new Option<string?>("--capacity") { Description = "capacity, e.g. 100G (required for files; a RADOS store defaults to its pool's free space in the cluster)" };
        var force = new Option<bool>("--force") { Description = "use a device even though it holds a file system, partition table or RAID/LVM signature (its data is lost)" };
        var cephConf = new Option<string?>("--ceph-conf") { Description = "rados: stores only: the cluster's ceph.conf, as the server reads it [default /etc/ceph/ceph.conf]" };
        var cephId = new Option<string?>("--id") { Description = "rados: stores only: the Ceph user (client.USER) whose keyring the ceph.conf names [default admin]" };
        var addStore = new Command("add-store", "Add a backing store to the pool while it runs") { path, capacity, force, cephConf, cephId };
        addStore.SetClientAction(async (parse, client, json, ct) =>
        {
            var location = StoreLocation(parse.GetValue(path)!, parse.GetValue(cephConf), parse.GetValue(cephId));
            var text = parse.GetValue(capacity);
            long bytes;
            if (text is not null)
            {
                bytes = CommandRunner.ParseSize(text, "--capacity");
            }
            else
            {
                bytes = location.StartsWith("rados:", StringComparison.Ordinal)
                    ? 0
                    : throw new CliException("--capacity is required for a file or device store; write it like 100G");
            }

            Print(await client.AddStoreAsync(new AddStoreRequest(location, bytes, parse.GetValue(force)), ct), json);
        });

        return new Command("pool", "The pool: backing stores and space") { info, addStore, CapacityCommands.PoolAutogrow() };
    }

    /// <summary>
    /// The store location to send: a rados: location gets --ceph-conf (made absolute here, where the
    /// operator typed it) and --id as its conf= and id= parts; the options mean nothing for a file.
    /// </summary>
    internal static string StoreLocation(string path, string? cephConf, string? cephId)
    {
        if (!path.StartsWith("rados:", StringComparison.Ordinal))
        {
            return cephConf is null && cephId is null
                ? path
                : throw new CliException("--ceph-conf and --id are for rados:POOL stores only");
        }

        if (path.Contains('?', StringComparison.Ordinal) && (cephConf is not null || cephId is not null))
        {
            throw new CliException($"'{path}' already has options after '?'; give conf and id there or as --ceph-conf and --id, not both");
        }

        var parts = new List<string>();
        if (cephConf is not null)
        {
            parts.Add("conf=" + Path.GetFullPath(cephConf));
        }

        if (cephId is not null)
        {
            parts.Add("id=" + cephId);
        }

        return parts.Count == 0 ? path : path + "?" + string.Join('&', parts);
    }

    public static Command CreateVerify()
    {
        var verify = new Command("verify", "Check every invariant of the pool's metadata and say what was found");
        verify.SetAction(async (parse, ct) =>
        {
            var clean = true;
            var code = await CommandRunner.RunAsync(parse, async (_, client, json, token) =>
            {
                var report = await client.VerifyAsync(Output.ProgressBar(json), token);
                clean = report.Clean;
                if (json)
                {
                    Output.Json(report);
                    return;
                }

                Console.Out.WriteLine(report.Clean ? "pool is clean" : $"pool has {report.Problems.Count} problem(s):");
                foreach (var problem in report.Problems)
                {
                    Console.Out.WriteLine("  " + problem);
                }

                Output.Fields(
                    ("referenced", Output.Size(report.ReferencedBytes)),
                    ("live mapped blocks", report.LiveMappedBlocks.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                    ("history records", report.HistoryRecords.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                    ("control records", report.ControlRecords.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            }, ct);

            // A report with problems is a failure for scripts even though the request succeeded.
            return code == 0 && !clean ? CommandRunner.Refused : code;
        });
        return verify;
    }

    private static void Print(PoolDto pool, bool json)
    {
        if (json)
        {
            Output.Json(pool);
            return;
        }

        Output.Fields(
            ("pool", pool.Id.ToString()),
            ("directory", pool.Directory),
            ("capacity", Output.Size(pool.CapacityBytes)),
            ("used", Output.Size(pool.UsedBytes)),
            ("free", Output.Size(pool.FreeBytes)),
            ("volumes", pool.Volumes.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("snapshots", pool.Snapshots.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Console.Out.WriteLine();
        Output.Table(["STORE", "KIND", "CAPACITY", "PATH"], pool.Stores.Select(s => (IReadOnlyList<string>)[s.Index.ToString(System.Globalization.CultureInfo.InvariantCulture), s.Kind, Output.Size(s.CapacityBytes), s.Path]));
    }
}
