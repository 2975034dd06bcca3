using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class ExportCommands
{
    public static Command Create()
    {
        var target = new Argument<string>("target") { Description = "volume or view (read-write), or VOLUME@SNAPSHOT (read-only)" };
        var name = new Option<string?>("--name") { Description = "export name clients ask for (default: the target)" };
        var readOnly = new Option<bool>("--read-only") { Description = "export a volume or view read-only" };
        var nbd = new Command("nbd", "Export over NBD (nbd://HOST:PORT/NAME)") { target, name, readOnly };
        nbd.SetClientAction(async (p, client, json, ct) =>
            Print([await client.CreateExportAsync(new CreateExportRequest(p.GetValue(target)!, p.GetValue(name), "nbd", p.GetValue(readOnly)), ct)], json, single: true));

        var list = new Command("list", "List exports");
        list.SetClientAction(async (_, client, json, ct) => Print(await client.ListExportsAsync(ct), json));

        var removeName = new Argument<string>("name") { Description = "export name" };
        var remove = new Command("remove", "Remove an export (connected clients keep their session until they disconnect)") { removeName };
        remove.SetClientAction(async (p, client, json, ct) =>
        {
            await client.DeleteExportAsync(p.GetValue(removeName)!, ct);
            VolumeCommands.Done(json, $"removed export {p.GetValue(removeName)}");
        });

        return new Command("export", "Make volumes, views and snapshots reachable over NBD") { nbd, list, remove };
    }

    private static void Print(IReadOnlyList<ExportDto> exports, bool json, bool single = false)
    {
        if (json)
        {
            Output.Json(single ? exports[0] : (object)exports);
            return;
        }

        Output.Table(
            ["EXPORT", "PROTOCOL", "TARGET", "MODE", "STATE", "URL"],
            exports.Select(e => (IReadOnlyList<string>)[e.Name, e.Protocol, e.Target, e.ReadOnly ? "ro" : "rw", e.Problem is null ? e.State : $"{e.State}: {e.Problem}", e.Url ?? "-"]));
    }
}
