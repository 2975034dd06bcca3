using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark policy`: scheduled and changed-data snapshots with retention.</summary>
public static class PolicyCommands
{
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = "policy name" };
        var volume = new Option<string?>("--volume") { Description = "volume to snapshot" };
        var group = new Option<string?>("--group") { Description = "group to snapshot (all members at one instant)" };
        var every = new Option<string?>("--every") { Description = "interval, e.g. 15m or 2h" };
        var hourly = new Option<bool>("--hourly") { Description = "every hour (with --at :MM for another minute than :00)" };
        var at = new Option<string?>("--at") { Description = "minute of the hour for --hourly, e.g. :05" };
        var daily = new Option<string?>("--daily") { Description = "every day at HH:MM" };
        var weekly = new Option<string?>("--weekly") { Description = "every week, e.g. sun@02:30" };
        var cron = new Option<string?>("--cron") { Description = "a cron expression, e.g. \"0 */4 * * *\"" };
        var zone = new Option<string?>("--zone") { Description = "IANA time zone of the schedule and retention periods (default UTC)" };
        var changed = new Option<string?>("--changed") { Description = "also snapshot once this much data changed since the last one, e.g. 512M" };
        var keepLast = new Option<int?>("--keep-last") { Description = "keep the newest N of its snapshots" };
        var keepHourly = new Option<int?>("--keep-hourly") { Description = "keep the newest snapshot of each of the last N hours" };
        var keepDaily = new Option<int?>("--keep-daily") { Description = "... of each of the last N days" };
        var keepWeekly = new Option<int?>("--keep-weekly") { Description = "... of each of the last N weeks" };
        var keepMonthly = new Option<int?>("--keep-monthly") { Description = "... of each of the last N months" };
        var disabled = new Option<bool>("--disabled") { Description = "create it paused" };
        var create = new Command("create", "Create a snapshot policy for a volume or a group (it only ever deletes the snapshots it made)")
        {
            name, volume, group, every, hourly, at, daily, weekly, cron, zone, changed, keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, disabled,
        };
        create.SetClientAction(async (p, client, json, ct) =>
        {
            var schedules = new[]
            {
                p.GetValue(every) is { } e ? $"every {e}" : null,
                p.GetValue(hourly) ? (p.GetValue(at) is { } minute ? $"hourly at {minute}" : "hourly") : null,
                p.GetValue(daily) is { } d ? $"daily {d}" : null,
                p.GetValue(weekly) is { } w ? $"weekly {w}" : null,
                p.GetValue(cron) is { } c ? $"cron {c}" : null,
            }.OfType<string>().ToList();
            if (schedules.Count > 1)
            {
                throw new CliException("give one schedule: --every, --hourly, --daily, --weekly or --cron");
            }

            if (p.GetValue(at) is not null && !p.GetValue(hourly))
            {
                throw new CliException("--at goes with --hourly");
            }

            var request = new PolicyRequest(
                p.GetValue(name)!,
                p.GetValue(volume),
                p.GetValue(group),
                schedules.FirstOrDefault(),
                p.GetValue(zone),
                p.GetValue(changed) is { } size ? CommandRunner.ParseSize(size, "--changed") : null,
                p.GetValue(keepLast),
                p.GetValue(keepHourly),
                p.GetValue(keepDaily),
                p.GetValue(keepWeekly),
                p.GetValue(keepMonthly),
                !p.GetValue(disabled));
            PrintOne(await client.CreatePolicyAsync(request, ct), json);
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

        return new Command("policy", "Snapshot policies: schedules, changed-data triggers, retention") { create, list, show, run, delete };
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
            ("retention", Retention(p.Definition)),
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
