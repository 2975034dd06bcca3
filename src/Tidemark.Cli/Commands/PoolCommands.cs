using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class PoolCommands
{
    public static Command Create()
    {
        var info = new Command("info", "Show the pool's capacity, use and stores");
        info.SetClientAction(async (_, client, json, ct) => Print(await client.GetPoolAsync(ct), json));

        var path = new Argument<string>("path") { Description = "file to create (sparse; a relative path is under the server's data directory) or block device to use" };
        var capacity = new Option<string>("--capacity") { Description = "capacity, e.g. 100G", Required = true };
        var force = new Option<bool>("--force") { Description = "use a device even though it holds a file system, partition table or RAID/LVM signature (its data is lost)" };
        var addStore = new Command("add-store", "Add a backing store to the pool while it runs") { path, capacity, force };
        addStore.SetClientAction(async (parse, client, json, ct) =>
        {
            var bytes = CommandRunner.ParseSize(parse.GetValue(capacity)!, "--capacity");
            Print(await client.AddStoreAsync(new AddStoreRequest(parse.GetValue(path)!, bytes, parse.GetValue(force)), ct), json);
        });

        return new Command("pool", "The pool: backing stores and space") { info, addStore, CapacityCommands.PoolAutogrow() };
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
