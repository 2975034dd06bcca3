using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class ExportCommands
{
    public const string ChapSecretVariable = "TIDEMARK_CHAP_SECRET";
    public const string MutualSecretVariable = "TIDEMARK_MUTUAL_SECRET";

    public static Command Create()
    {
        var list = new Command("list", "List exports");
        list.SetClientAction(async (_, client, json, ct) => Print(await client.ListExportsAsync(ct), json));

        var removeName = new Argument<string>("name") { Description = "export name" };
        var remove = new Command("remove", "Remove an export (connected clients and logged-in iSCSI sessions keep their disk until they disconnect)") { removeName };
        remove.SetClientAction(async (p, client, json, ct) =>
        {
            await client.DeleteExportAsync(p.GetValue(removeName)!, ct);
            VolumeCommands.Done(json, $"removed export {p.GetValue(removeName)}");
        });

        return new Command("export", "Make volumes, views and snapshots reachable over NBD and iSCSI") { Nbd(), Iscsi(), list, remove };
    }

    private static Command Nbd()
    {
        var target = new Argument<string>("target") { Description = "volume or view (read-write), or VOLUME@SNAPSHOT (read-only)" };
        var name = new Option<string?>("--name") { Description = "export name clients ask for (default: the target)" };
        var readOnly = new Option<bool>("--read-only") { Description = "export a volume or view read-only" };
        var tlsRequired = new Option<bool>("--tls-required") { Description = "serve only clients that upgrade with STARTTLS (needs serve --tls-cert)" };
        var nbd = new Command("nbd", "Export over NBD (nbd://HOST:PORT/NAME; nbds:// when TLS is required)") { target, name, readOnly, tlsRequired };
        nbd.SetClientAction(async (p, client, json, ct) =>
            Print([await client.CreateExportAsync(new CreateExportRequest(p.GetValue(target)!, p.GetValue(name), "nbd", p.GetValue(readOnly), TlsRequired: p.GetValue(tlsRequired)), ct)], json, single: true));
        return nbd;
    }

    private static Command Iscsi()
    {
        var name = new Argument<string>("name") { Description = "export name (also the default target IQN's last part)" };
        var targets = new Argument<string[]>("targets")
        {
            Description = "LUN 0, 1, ...: volumes or views (read-write) and VOLUME@SNAPSHOT (read-only)",
            Arity = ArgumentArity.OneOrMore,
        };
        var iqn = new Option<string?>("--iqn") { Description = "target name (default iqn.2026-11.dev.tidemark:NAME)" };
        var allow = new Option<string[]>("--allow") { Description = "initiator IQN allowed to see and log in to the target (repeat; default: any initiator)", AllowMultipleArgumentsPerToken = false };
        var chapUser = new Option<string?>("--chap-user") { Description = "CHAP user initiators log in with" };
        var chapSecret = new Option<string?>("--chap-secret") { Description = $"CHAP secret, 12-255 characters (default: env {ChapSecretVariable}, which stays out of the process list)" };
        var mutualUser = new Option<string?>("--mutual-user") { Description = "mutual CHAP: the user the target answers with (needs CHAP)" };
        var mutualSecret = new Option<string?>("--mutual-secret") { Description = $"mutual CHAP secret, 12-255 characters, not the CHAP secret (default: env {MutualSecretVariable})" };
        var readOnly = new Option<bool>("--read-only") { Description = "make every LUN read-only" };
        var command = new Command("iscsi", "Export over iSCSI as one target with one LUN per volume, view or snapshot (iscsi://HOST:PORT/IQN/LUN)")
        {
            name, targets, iqn, allow, chapUser, chapSecret, mutualUser, mutualSecret, readOnly,
        };
        command.SetClientAction(async (p, client, json, ct) =>
        {
            var luns = p.GetValue(targets)!;
            var user = p.GetValue(chapUser);
            var mutual = p.GetValue(mutualUser);
            var request = new CreateExportRequest(
                luns[0],
                p.GetValue(name),
                "iscsi",
                p.GetValue(readOnly),
                [.. luns.Skip(1)],
                p.GetValue(iqn),
                p.GetValue(allow) ?? [],
                user,
                p.GetValue(chapSecret) ?? (user is null ? null : Environment.GetEnvironmentVariable(ChapSecretVariable)),
                mutual,
                p.GetValue(mutualSecret) ?? (mutual is null ? null : Environment.GetEnvironmentVariable(MutualSecretVariable)));
            Print([await client.CreateExportAsync(request, ct)], json, single: true);
        });
        return command;
    }

    private static void Print(IReadOnlyList<ExportDto> exports, bool json, bool single = false)
    {
        if (json)
        {
            Output.Json(single ? exports[0] : (object)exports);
            return;
        }

        Output.Table(
            ["EXPORT", "PROTOCOL", "TARGET", "MODE", "ACCESS", "STATE", "URL"],
            exports.Select(e => (IReadOnlyList<string>)[
                e.Name,
                e.Protocol,
                e.Luns is { Count: > 0 } luns ? string.Join(",", luns.Select(l => l.Target)) : e.Target,
                Mode(e),
                Access(e),
                e.Problem is null ? e.State : $"{e.State}: {e.Problem}",
                e.Url ?? "-"]));
    }

    private static string Mode(ExportDto e) =>
        e.Luns is { Count: > 1 } luns && luns.Any(l => l.ReadOnly) && !e.ReadOnly
            ? string.Join(",", luns.Select(l => l.ReadOnly ? "ro" : "rw"))
            : e.ReadOnly ? "ro" : "rw";

    /// <summary>"any", "2 initiators", plus ", chap" or ", mutual chap"; "-" for NBD, which has no access rules.</summary>
    private static string Access(ExportDto e)
    {
        if (e.Protocol != "iscsi")
        {
            return "-";
        }

        var who = e.AllowedInitiators is { Count: > 0 } allowed
            ? allowed.Count == 1 ? allowed[0] : $"{allowed.Count} initiators"
            : "any";
        var auth = e.MutualChapUser is not null ? ", mutual chap" : e.ChapUser is not null ? ", chap" : string.Empty;
        return who + auth;
    }
}
