using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark policy`: scheduled and changed-data snapshots with retention.</summary>
public static class PolicyCommands
{
    public static Command Create()
    {
        var o = new PolicyOptions();
        var create = new Command("create", "Create a snapshot policy for a volume or a group (it only ever deletes the snapshots it made)");
        o.AddTo(create);
        create.Options.Add(o.Disabled);
        create.SetClientAction(async (p, client, json, ct) =>
        {
            var request = o.Apply(p, new PolicyRequest(p.GetValue(o.Name)!, Enabled: !p.GetValue(o.Disabled)));
            PrintOne(await client.CreatePolicyAsync(request, ct), json);
        });

        var u = new PolicyOptions();
        var enable = new Option<bool>("--enable") { Description = "resume a paused policy" };
        var update = new Command("update", "Change a policy: only the options given change (a new schedule replaces the old one); its snapshots stay its own");
        u.AddTo(update);
        update.Options.Add(u.Disabled);
        update.Options.Add(enable);
        update.SetClientAction(async (p, client, json, ct) =>
        {
            if (p.GetValue(u.Disabled) && p.GetValue(enable))
            {
                throw new CliException("give --enable or --disabled, not both");
            }

            var current = (await client.GetPolicyAsync(p.GetValue(u.Name)!, ct)).Definition;
            var changed = u.Apply(p, current);
            if (p.GetValue(u.Volume) is not null)
            {
                changed = changed with { Group = null };
            }
            else if (p.GetValue(u.Group) is not null)
            {
                changed = changed with { Volume = null };
            }

            changed = changed with { Enabled = p.GetValue(enable) || (!p.GetValue(u.Disabled) && current.Enabled) };
            PrintOne(await client.UpdatePolicyAsync(changed, ct), json);
        });

        var list = new Command("list", "List snapshot policies");
        list.SetClientAction(async (_, client, json, ct) =>
        {
            var policies = await client.ListPoliciesAsync(ct);
            if (json)
            {
                Output.Json(policies);
                return;
            }

            Output.Table(
                ["POLICY", "TARGET", "SCHEDULE", "CHANGED", "RETENTION", "NEXT RUN", "SNAPSHOTS", "LAST ERROR"],
                policies.Select(p => (IReadOnlyList<string>)[
                    p.Definition.Name + (p.Definition.Enabled ? "" : " (paused)"),
                    p.Definition.Volume ?? $"group {p.Definition.Group}",
                    p.Definition.Schedule ?? "-",
                    p.Definition.ChangedBytes is { } b ? Output.Size(b) : "-",
                    Retention(p.Definition),
                    p.NextRun is { } next ? Output.Time(next) : "-",
                    p.Snapshots.Count.ToString(CultureInfo.InvariantCulture),
                    p.LastError ?? "-"]));
        });

        var showName = new Argument<string>("name") { Description = "policy name" };
        var show = new Command("show", "Show a policy, its snapshots and what it did recently") { showName };
        show.SetClientAction(async (p, client, json, ct) => PrintOne(await client.GetPolicyAsync(p.GetValue(showName)!, ct), json));

        var runName = new Argument<string>("name") { Description = "policy name" };
        var run = new Command("run", "Take the policy's snapshot now and apply its retention") { runName };
        run.SetClientAction(async (p, client, json, ct) => PrintOne(await client.RunPolicyAsync(p.GetValue(runName)!, ct), json));

        var deleteName = new Argument<string>("name") { Description = "policy name" };
        var delete = new Command("delete", "Delete a policy (the snapshots it made stay)") { deleteName };
        delete.SetClientAction(async (p, client, json, ct) =>
        {
            await client.DeletePolicyAsync(p.GetValue(deleteName)!, ct);
            VolumeCommands.Done(json, $"deleted policy {p.GetValue(deleteName)}; its snapshots stay");
        });

        return new Command("policy", "Snapshot policies: schedules, changed-data triggers, retention") { create, update, list, show, run, delete };
    }

    /// <summary>The options of a policy definition, shared by create and update: each given one replaces that part of the definition.</summary>
    private sealed class PolicyOptions
    {
        public Argument<string> Name { get; } = new("name") { Description = "policy name" };

        public Option<string?> Volume { get; } = new("--volume") { Description = "volume to snapshot" };

        public Option<string?> Group { get; } = new("--group") { Description = "group to snapshot (all members at one instant)" };

        public Option<string?> Every { get; } = new("--every") { Description = "interval, e.g. 15m or 2h" };

        public Option<bool> Hourly { get; } = new("--hourly") { Description = "every hour (with --at :MM for another minute than :00)" };

        public Option<string?> At { get; } = new("--at") { Description = "minute of the hour for --hourly, e.g. :05" };

        public Option<string?> Daily { get; } = new("--daily") { Description = "every day at HH:MM" };

        public Option<string?> Weekly { get; } = new("--weekly") { Description = "every week, e.g. sun@02:30" };

        public Option<string?> Cron { get; } = new("--cron") { Description = "a cron expression, e.g. \"0 */4 * * *\"" };

        public Option<string?> Zone { get; } = new("--zone") { Description = "IANA time zone of the schedule and retention periods (default UTC)" };

        public Option<string?> Changed { get; } = new("--changed") { Description = "also snapshot once this much data changed since the last one, e.g. 512M" };

        public Option<int?> KeepLast { get; } = new("--keep-last") { Description = "keep the newest N of its snapshots" };

        public Option<int?> KeepHourly { get; } = new("--keep-hourly") { Description = "keep the newest snapshot of each of the last N hours" };

        public Option<int?> KeepDaily { get; } = new("--keep-daily") { Description = "... of each of the last N days" };

        public Option<int?> KeepWeekly { get; } = new("--keep-weekly") { Description = "... of each of the last N weeks" };

        public Option<int?> KeepMonthly { get; } = new("--keep-monthly") { Description = "... of each of the last N months" };

        public Option<bool> Disabled { get; } = new("--disabled") { Description = "paused: it takes no snapshots until enabled" };

        public Option<string?> Hosts { get; } = new("--hosts") { Description = "hosts whose agents quiesce the application around each snapshot, comma-separated ('host list'); '' for none" };

        public Option<string?> Fallback { get; } = new("--fallback") { Description = "when an agent cannot quiesce: crash (take it, labelled crash; default) or skip" };

        public Option<string?> Verify { get; } = new("--verify") { Description = "on: after each snapshot the first host's agent mounts a view of it and checks it (fsck -n, pg_amcheck); off: never. Default: on when --hosts is given" };

        public Option<string?> IndexMail { get; } = new("--index-mail") { Description = "on: after each snapshot, each host whose agent declares a mail store on the volume builds its header index in the background, so the first 'recover mail' search is fast; off: the first search builds it. Default: on when --hosts is given" };

        public Option<string?> PreferConsistent { get; } = new("--prefer-consistent") { Description = "on: the hourly/daily/weekly/monthly snapshot kept is the period's most consistent one (application, then filesystem), not its newest; off (default)" };

        public void AddTo(Command command)
        {
            command.Arguments.Add(Name);
            foreach (var option in new Option[] { Volume, Group, Every, Hourly, At, Daily, Weekly, Cron, Zone, Changed, KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, Hosts, Fallback, Verify, IndexMail, PreferConsistent })
            {
                command.Options.Add(option);
            }
        }

        /// <summary>The definition with every given option applied.</summary>
        public PolicyRequest Apply(ParseResult p, PolicyRequest d)
        {
            var schedules = new[]
            {
                p.GetValue(Every) is { } e ? $"every {e}" : null,
                p.GetValue(Hourly) ? (p.GetValue(At) is { } minute ? $"hourly at {minute}" : "hourly") : null,
                p.GetValue(Daily) is { } daily ? $"daily {daily}" : null,
                p.GetValue(Weekly) is { } w ? $"weekly {w}" : null,
                p.GetValue(Cron) is { } c ? $"cron {c}" : null,
            }.OfType<string>().ToList();
            if (schedules.Count > 1)
            {
                throw new CliException("give one schedule: --every, --hourly, --daily, --weekly or --cron");
            }

            if (p.GetValue(At) is not null && !p.GetValue(Hourly))
            {
                throw new CliException("--at goes with --hourly");
            }

            return d with
            {
                Volume = p.GetValue(Volume) ?? d.Volume,
                Group = p.GetValue(Group) ?? d.Group,
                Schedule = schedules.FirstOrDefault() ?? d.Schedule,
                TimeZone = p.GetValue(Zone) ?? d.TimeZone,
                ChangedBytes = p.GetValue(Changed) is { } size ? CommandRunner.ParseSize(size, "--changed") : d.ChangedBytes,
                KeepLast = p.GetValue(KeepLast) ?? d.KeepLast,
                KeepHourly = p.GetValue(KeepHourly) ?? d.KeepHourly,
                KeepDaily = p.GetValue(KeepDaily) ?? d.KeepDaily,
                KeepWeekly = p.GetValue(KeepWeekly) ?? d.KeepWeekly,
                KeepMonthly = p.GetValue(KeepMonthly) ?? d.KeepMonthly,
                Hosts = p.GetValue(Hosts) is { } hosts ? SnapshotCommands.HostList(hosts) : d.Hosts,
                Fallback = p.GetValue(Fallback) ?? d.Fallback,
                Verify = p.GetValue(Verify) switch
                {
                    null => d.Verify,
                    "on" => true,
                    "off" => false,
                    var other => throw new CliException($"--verify is on or off, not '{other}'"),
                },
                IndexMail = p.GetValue(IndexMail) switch
                {
                    null => d.IndexMail,
                    "on" => true,
                    "off" => false,
                    var other => throw new CliException($"--index-mail is on or off, not '{other}'"),
                },
                PreferConsistent = p.GetValue(PreferConsistent) switch
                {
                    null => d.PreferConsistent,
                    "on" => true,
                    "off" => false,
                    var other => throw new CliException($"--prefer-consistent is on or off, not '{other}'"),
                },
            };
        }
    }

    private static string Retention(PolicyRequest d)
    {
        var parts = new[]
        {
            d.KeepLast is { } l ? $"last {l}" : null,
            d.KeepHourly is { } h ? $"{h} hourly" : null,
            d.KeepDaily is { } dd ? $"{dd} daily" : null,
            d.KeepWeekly is { } w ? $"{w} weekly" : null,
            d.KeepMonthly is { } m ? $"{m} monthly" : null,
        }.OfType<string>().ToList();
        return parts.Count == 0 ? "keep all" : string.Join(", ", parts);
    }

    private static void PrintOne(PolicyDto p, bool json)
    {
        if (json)
        {
            Output.Json(p);
            return;
        }

        Output.Fields(
            ("policy", p.Definition.Name + (p.Definition.Enabled ? "" : " (paused)")),
            ("target", p.Definition.Volume ?? $"group {p.Definition.Group}"),
            ("schedule", (p.Definition.Schedule ?? "-") + (p.Definition.TimeZone is { } z ? $" ({z})" : "")),
            ("changed-data trigger", p.Definition.ChangedBytes is { } b ? Output.Size(b) : "-"),
            ("agents", p.Definition.Hosts is { Count: > 0 } h ? $"{string.Join(", ", h)} (fallback {p.Definition.Fallback ?? "crash"})" : "- (crash-consistent)"),
            ("verification", (p.Definition.Verify ?? p.Definition.Hosts is { Count: > 0 }) ? $"on (through {(p.Definition.Hosts is { Count: > 0 } vh ? vh[0] : "-")})" : "off"),
            ("mail index", (p.Definition.IndexMail ?? p.Definition.Hosts is { Count: > 0 }) ? "after each snapshot, on hosts with a mail store on it" : "off (built by the first search)"),
            ("retention", Retention(p.Definition) + (p.Definition.PreferConsistent == true ? ", preferring consistent snapshots" : "")),
            ("next run", p.NextRun is { } next ? Output.Time(next) : "-"),
            ("last snapshot", p.LastSnapshotAt is { } last ? Output.Time(last) : "-"),
            ("snapshots", p.Snapshots.Count == 0 ? "-" : string.Join(", ", p.Snapshots)),
            ("last error", p.LastError ?? "-"));
        foreach (var a in p.Activity.TakeLast(10))
        {
            Console.Out.WriteLine($"  {Output.Time(a.Time)}  {a.Action,-8} {a.Snapshot ?? "-"}  {a.Message}");
        }
    }
}
