using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark host`: application hosts whose agents the server calls around snapshots (ADR 0015).</summary>
public static class HostCommands
{
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "a name for the host, e.g. db1" };
        var address = new Argument<string>("address") { Description = "the agent's address IP:PORT (printed by 'tidemark agent pair' there)" };
        var fingerprint = new Option<string>("--fingerprint") { Description = "the agent's fingerprint (printed by 'tidemark agent pair' there)", Required = true };
        var add = new Command("add", "Add an application host: the server calls its agent, pinned by fingerprint, to quiesce around snapshots") { name, address, fingerprint };
        add.SetClientAction(async (p, client, json, ct) =>
            Print([await client.AddHostAsync(new AddHostRequest(p.GetValue(name)!, p.GetValue(address)!, p.GetValue(fingerprint)!), ct)], json));

        var list = new Command("list", "List application hosts");
        list.SetClientAction(async (_, client, json, ct) => Print(await client.ListHostsAsync(ct), json));

        var removeName = new Argument<string>("name") { Description = "host name" };
        var remove = new Command("remove", "Remove a host: its agent is not called any more") { removeName };
        remove.SetClientAction(async (p, client, json, ct) =>
        {
            await client.RemoveHostAsync(p.GetValue(removeName)!, ct);
            VolumeCommands.Done(json, $"removed host {p.GetValue(removeName)}");
        });

        var statusName = new Argument<string>("name") { Description = "host name" };
        var status = new Command("status", "Ask a host's agent for its state and its mounts (through the server)") { statusName };
        status.SetClientAction(async (p, client, json, ct) =>
        {
            var s = await client.GetHostStatusAsync(p.GetValue(statusName)!, ct);
            if (json)
            {
                Output.Json(s);
                return;
            }

            Output.Fields(
                ("host", s.Name),
                ("agent", $"{s.Status.Name} {s.Status.Version}"),
                ("fingerprint", s.Status.Fingerprint),
                ("deadline", $"{s.Status.DeadlineSeconds:0.###}s"),
                ("quiesced now", s.Status.Sessions.Count == 0 ? "nothing" : string.Join("; ", s.Status.Sessions.Select(x => $"{string.Join(", ", x.Quiesced)} until {Output.Time(x.ResumeBy)}"))),
                ("last quiesce", s.Status.LastSession is { } l ? $"{l.State} after {l.PausedSeconds:0.###}s ({string.Join(", ", l.Quiesced)})" : "-"));
            Console.WriteLine();
            Output.Table(["MOUNT", "FS", "SOURCE", "VOLUME", "FREEZABLE"], s.Mounts.Select(m => (IReadOnlyList<string>)[m.Path, m.FileSystem, m.BackingFile is { } f ? $"{m.Source} ({f})" : m.Source, m.Volume ?? (m.Attachment is { } uri ? $"- (attached: {uri})" : "-"), m.Freezable ? "yes" : "no"]));
        });

        return new Command("host", "Application hosts whose agents quiesce applications around snapshots") { add, list, remove, status };
    }

    private static void Print(IReadOnlyList<HostDto> hosts, bool json)
    {
        if (json)
        {
            Output.Json(hosts.Count == 1 ? hosts[0] : (object)hosts);
            return;
        }

        Output.Table(["HOST", "ADDRESS", "FINGERPRINT", "ADDED"], hosts.Select(h => (IReadOnlyList<string>)[h.Name, h.Address, h.Fingerprint, Output.Time(h.AddedAt)]));
    }
}
