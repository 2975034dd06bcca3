using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark replica`: volumes replicated to a paired server.</summary>
public static class ReplicaCommands
{
    public static Command Create()
    {
        var volume = new Argument<string>("volume") { Description = "volume to replicate" };
        var to = new Option<string>("--to") { Description = "partner to replicate to ('tidemark partner list')", Required = true };
        var asName = new Option<string?>("--as") { Description = "name of the replica volume at the partner (default: the same)" };
        var every = new Option<string?>("--every") { Description = "sync automatically this often, e.g. 30s, 5m, 1h (default: only 'replica sync')" };
        var bandwidth = new Option<string?>("--bandwidth") { Description = "at most this many bytes per second on the link, e.g. 20M (default: no limit)" };
        var afterPolicy = new Option<bool>("--after-policy-snapshots") { Description = "also sync after each snapshot a policy takes of it" };
        var seed = new Option<bool>("--seed") { Description = "the partner's volume already holds a copy (an imported stream, a restored backup, a disk copy): the first sync compares both by hash scan and sends only the blocks that differ" };
        var (standby, standbyIqn, standbyInitiators) = StandbyOptions();
        var level = new Option<int?>("--zstd-level") { Description = "zstd level of the streams, 1 (fastest) to 22 (smallest), 0 for none (default 3)" };
        var (hosts, fallback) = AgentOptions();
        var create = new Command("create", "Replicate a volume (or a group, as one unit) to a partner; the first sync sends it whole (or only what differs from a --seed), later ones only what changed") { volume, to, asName, every, bandwidth, afterPolicy, seed, standby, standbyIqn, standbyInitiators, level, hosts, fallback };
        create.SetClientAction(async (p, client, json, ct) =>
            Print([await client.CreateReplicaAsync(new CreateReplicaRequest(p.GetValue(volume)!, p.GetValue(to)!, p.GetValue(asName), p.GetValue(every), p.GetValue(bandwidth), p.GetValue(afterPolicy), p.GetValue(seed), Standby(p.GetValue(standby), p.GetValue(standbyIqn), p.GetValue(standbyInitiators)), p.GetValue(level), HostsOf(p, hosts), p.GetValue(fallback)), ct)], json));

        var updateVolume = new Argument<string>("volume") { Description = "replicated volume" };
        var updateEvery = new Option<string?>("--every") { Description = "sync automatically this often (30s, 5m, 1h), or off" };
        var updateBandwidth = new Option<string?>("--bandwidth") { Description = "bytes per second at most on the link (20M), or off" };
        var (updateStandby, updateStandbyIqn, updateStandbyInitiators) = StandbyOptions();
        var updateLevel = new Option<int?>("--zstd-level") { Description = "zstd level of the streams, 1-22, 0 for none" };
        var (updateHosts, updateFallback) = AgentOptions();
        var update = new Command("update", "Change a replica's schedule, bandwidth limit, compression, standby exports or agents (from its next sync)") { updateVolume, updateEvery, updateBandwidth, updateStandby, updateStandbyIqn, updateStandbyInitiators, updateLevel, updateHosts, updateFallback };
        update.SetClientAction(async (p, client, json, ct) =>
            Print([await client.UpdateReplicaAsync(p.GetValue(updateVolume)!, new UpdateReplicaRequest(p.GetValue(updateEvery), p.GetValue(updateBandwidth), Standby(p.GetValue(updateStandby), p.GetValue(updateStandbyIqn), p.GetValue(updateStandbyInitiators)), p.GetValue(updateLevel), HostsOf(p, updateHosts), p.GetValue(updateFallback)), ct)], json));

        var list = new Command("list", "List replicas with their lag (age of the newest replicated snapshot) and last error");
        list.SetClientAction(async (_, client, json, ct) => Print(await client.ListReplicasAsync(ct), json));

        var showVolume = new Argument<string>("volume") { Description = "replicated volume" };
        var show = new Command("show", "Show one replica") { showVolume };
        show.SetClientAction(async (p, client, json, ct) =>
        {
            var replica = await client.GetReplicaAsync(p.GetValue(showVolume)!, ct);
            Print([replica], json);
            if (!json && replica.Hosts is { Count: > 0 } quiescing)
            {
                Console.Out.WriteLine($"agents: {string.Join(", ", quiescing)} quiesce around each sync's snapshot (fallback {replica.Fallback})");
            }

            if (!json && replica.LastConsistency is { } consistency)
            {
                Console.Out.WriteLine($"consistency of {replica.LastSnapshot}: {consistency}");
            }

            if (!json && replica.PartnerWrites is { } partnerWrites)
            {
                // Before a fail-back: whether the other site wrote after the common snapshot.
                Console.Out.WriteLine(partnerWrites);
            }
        });

        var syncVolume = new Argument<string>("volume") { Description = "replicated volume" };
        var sync = new Command("sync", "Replicate now: snapshot, send what changed since the newest common snapshot, resume after link failures") { syncVolume };
        sync.SetClientAction(async (p, client, json, ct) => Print([await client.SyncReplicaAsync(p.GetValue(syncVolume)!, Output.ProgressBar(json), ct)], json));

        var deleteVolume = new Argument<string>("volume") { Description = "replicated volume" };
        var delete = new Command("delete", "Stop replicating (both sides keep their snapshots)") { deleteVolume };
        delete.SetClientAction(async (p, client, json, ct) =>
        {
            await client.DeleteReplicaAsync(p.GetValue(deleteVolume)!, ct);
            VolumeCommands.Done(json, $"{p.GetValue(deleteVolume)} is no longer replicated");
        });

        var promoteVolume = new Argument<string>("volume") { Description = "replica volume at this (DR) site" };
        var promote = new Command("promote", "At the DR site: make a replica a writable primary at its newest complete snapshot; works with the primary unreachable") { promoteVolume };
        promote.SetClientAction(async (p, client, json, ct) =>
        {
            var result = await client.PromoteReplicaAsync(p.GetValue(promoteVolume)!, ct);
            if (json)
            {
                Output.Json(result);
                return;
            }

            Console.WriteLine($"{p.GetValue(promoteVolume)} is now a primary here, as of {result.Snapshot.Address}; export it to bring the application up");
            if (result.Note is { } note)
            {
                Console.WriteLine(note);
            }
        });

        var reverseVolume = new Argument<string>("volume") { Description = "promoted replica at this (DR) site" };
        var reverse = new Command(
            "reverse",
            "Fail-back, at the DR site: send a promoted replica back into the volume it came from, sending only what changed since the newest snapshot both sites share; "
            + "the other site reverts its own later writes (kept as a snapshot). Repeat 'replica sync' as needed, then 'replica promote' at home")
        { reverseVolume };
        var discardAt = new Option<string?>("--discard-writes-at") { Description = "split brain (home also wrote after the common snapshot): 'home' reverts those writes, keeping them in a pre-rollback-... snapshot there; without it such a reverse is refused" };
        reverse.Options.Add(discardAt);
        reverse.SetClientAction(async (p, client, json, ct) =>
        {
            if (p.GetValue(discardAt) is { } at && at != "home")
            {
                throw new CliException($"--discard-writes-at takes 'home' (the site the volume is sent back to), not '{at}'");
            }

            var replica = await client.ReverseReplicaAsync(p.GetValue(reverseVolume)!, Output.ProgressBar(json), p.GetValue(discardAt), ct);
            Print([replica], json);
            if (!json && replica.DiscardedWrites is { } discarded)
            {
                Console.Out.WriteLine(discarded);
            }
        });

        var demoteVolume = new Argument<string>("volume") { Description = "promoted replica (or replicated group) at this site" };
        var demote = new Command("demote", "Make a promoted replica a replica again (done by the other site's fail-back promotion when it can reach this one)") { demoteVolume };
        demote.SetClientAction(async (p, client, json, ct) =>
        {
            var result = await client.DemoteReplicaAsync(p.GetValue(demoteVolume)!, ct);
            var kept = result.KeptStates ?? (result.KeptState is { } one ? [one] : []);
            var what = result.Volumes is { } members ? $"group {p.GetValue(demoteVolume)} ({string.Join(", ", members)}) is" : $"{p.GetValue(demoteVolume)} is";
            VolumeCommands.Done(json, $"{what} a replica again{(kept.Count > 0 ? $"; what it held beyond its newest replicated snapshot is kept as {string.Join(", ", kept.Select(k => k.Address))}" : "")}");
        });

        var acceptVolume = new Argument<string>("volume") { Description = "an existing volume at this site that a partner will seed over" };
        var acceptFrom = new Option<string>("--from") { Description = "the partner that replicates into it, PARTNER or PARTNER:VOLUME (its volume, when named differently)", Required = true };
        var accept = new Command("accept", "At the receiving site: offer an existing volume as a partner's replica target ('replica create --seed' there needs it); what it holds is kept as a snapshot, and it is read-only until promoted") { acceptVolume, acceptFrom };
        accept.SetClientAction(async (p, client, json, ct) =>
        {
            var from = p.GetValue(acceptFrom)!.Split(':', 2);
            var result = await client.AcceptReplicaAsync(p.GetValue(acceptVolume)!, new AcceptReplicaRequest(from[0], from.Length > 1 ? from[1] : null), ct);
            if (json)
            {
                Output.Json(result);
                return;
            }

            VolumeCommands.Done(json, $"{result.Replica.Volume} accepts {result.Replica.Partner}:{result.Replica.SourceVolume}; what it held is kept as {result.KeptState.Address}");
        });

        var incoming = new Command("incoming", "List volumes replicated into this server, who sends them and whether they were promoted");
        incoming.SetClientAction(async (_, client, json, ct) =>
        {
            var records = await client.ListIncomingAsync(ct);
            if (json)
            {
                Output.Json(records);
                return;
            }

            Output.Table(
                ["VOLUME", "FROM", "SOURCE VOLUME", "LAST SNAPSHOT", "RECEIVED", "ROLE", "KEEP"],
                records.Select(r => (IReadOnlyList<string>)[
                    r.Volume,
                    r.Partner,
                    r.SourceVolume,
                    r.LastSnapshot ?? "-",
                    r.LastReceivedAt?.ToString("u", CultureInfo.InvariantCulture) ?? "-",
                    r.Promoted ? "promoted" : "replica",
                    (r.KeepLast ?? ReplicaRetentionRequest.DefaultKeepLast).ToString(CultureInfo.InvariantCulture)]));
        });

        var retainVolume = new Argument<string>("volume") { Description = "replica (or replicated group) at this (DR) site" };
        var keepLast = new Option<int>("--keep-last") { Description = "replicated snapshots to keep (the oldest beyond are deleted after each sync; held or exported ones stay)", Required = true };
        var retain = new Command("retain", $"At the DR site: how many replicated snapshots a replica keeps (default {ReplicaRetentionRequest.DefaultKeepLast}); its own policies keep their own history") { retainVolume, keepLast };
        retain.SetClientAction(async (p, client, json, ct) =>
        {
            var records = await client.SetReplicaRetentionAsync(p.GetValue(retainVolume)!, p.GetValue(keepLast), ct);
            VolumeCommands.Done(json, $"{string.Join(", ", records.Select(r => r.Volume))} keep{(records.Count == 1 ? "s" : "")} the last {p.GetValue(keepLast)} replicated snapshots");
        });

        return new Command("replica", "Replication of volumes to paired servers") { create, update, list, show, sync, delete, promote, reverse, demote, accept, incoming, retain };
    }

    /// <summary>--hosts and --fallback of `replica create` and `replica update` (ADR 0015), worded like a policy's.</summary>
    private static (Option<string?> Hosts, Option<string?> Fallback) AgentOptions() => (
        new Option<string?>("--hosts") { Description = "hosts whose agents quiesce the application around each sync's snapshot, comma-separated ('host list'); '' for none" },
        new Option<string?>("--fallback") { Description = "when an agent cannot quiesce: crash (send the snapshot anyway, labelled crash; default) or skip (no sync; the next one tries again)" });

    private static IReadOnlyList<string>? HostsOf(ParseResult p, Option<string?> hosts) =>
        p.GetValue(hosts) is { } value ? SnapshotCommands.HostList(value) : null;

    private static (Option<string[]> Exports, Option<string?> Iqn, Option<string[]> Initiators) StandbyOptions() => (
        new Option<string[]>("--standby-export") { Description = "an export the partner brings up when it promotes the replica: nbd, nbd:NAME, iscsi or iscsi:NAME (repeat for several; 'off' removes them)", AllowMultipleArgumentsPerToken = false },
        new Option<string?>("--standby-iqn") { Description = "IQN of the iSCSI standby export (default: iqn.2026-11.dev.tidemark:NAME)" },
        new Option<string[]>("--standby-initiator") { Description = "an initiator (IQN) the iSCSI standby export admits, e.g. the standby mail server's (repeat; default: any)" });

    /// <summary>"nbd", "nbd:NAME", "iscsi", "iscsi:NAME"; "off" alone clears; nothing given leaves them (null).</summary>
    private static List<StandbyExportDto>? Standby(string[]? exports, string? iqn, string[]? initiators)
    {
        if (exports is null or { Length: 0 })
        {
            return iqn is null && initiators is null or { Length: 0 } ? null : throw new CliException("--standby-iqn and --standby-initiator go with --standby-export iscsi");
        }

        if (exports is ["off"])
        {
            return [];
        }

        return [.. exports.Select(e =>
        {
            var (protocol, name) = e.IndexOf(':', StringComparison.Ordinal) is var colon and >= 0 ? (e[..colon], e[(colon + 1)..]) : (e, null);
            return protocol switch
            {
                "nbd" => new StandbyExportDto("nbd", name),
                "iscsi" => new StandbyExportDto("iscsi", name, iqn, initiators is { Length: > 0 } ? initiators : null),
                _ => throw new CliException($"--standby-export takes nbd, nbd:NAME, iscsi or iscsi:NAME, not '{e}'"),
            };
        })];
    }

    private static void Print(IReadOnlyList<ReplicaDto> replicas, bool json)
    {
        if (json)
        {
            Output.Json(replicas.Count == 1 ? replicas[0] : (object)replicas);
            return;
        }

        Output.Table(
            ["VOLUME", "PARTNER", "AS", "STATE", "LAST SNAPSHOT", "LAG", "SYNCING", "LAST SENT", "RATIO", "TOTAL SENT", "RETRIES", "LAST ERROR"],
            replicas.Select(r => (IReadOnlyList<string>)[
                r.Volume,
                r.Partner,
                r.RemoteVolume,
                r.State,
                r.LastSnapshot ?? "-",
                r.LagSeconds is { } lag ? TimeSpan.FromSeconds(Math.Round(lag)).ToString("g", CultureInfo.InvariantCulture) : "-",
                r.Syncing is { } s ? $"{(s.Percent is { } p ? $"{p:F0}%" : Output.Size(s.Done))}{(s.EtaSeconds is { } eta ? $" ETA {TimeSpan.FromSeconds(Math.Round(eta)).ToString("g", CultureInfo.InvariantCulture)}" : "")}" : "-",
                Output.Size(r.LastBytesSent),
                r.LastCompressionRatio is { } ratio ? $"{ratio:F2}x" : "-",
                Output.Size(r.BytesSent),
                r.Retries.ToString(CultureInfo.InvariantCulture),
                r.LastError ?? "-"]));
    }
}
