using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark alerts`: what needs looking at now, and the thresholds that decide it.</summary>
public static class AlertCommands
{
    public static Command Create()
    {
        var list = new Command("list", "What needs looking at now: the pool nearly full, failed policies and jobs, replicas behind their RPO, stalled jobs");
        list.SetClientAction(async (_, client, json, ct) =>
        {
            var alerts = await client.ListAlertsAsync(ct);
            if (json)
            {
                Output.Json(alerts);
                return;
            }

            if (alerts.Count == 0)
            {
                Console.WriteLine("no alerts");
                return;
            }

            Output.Table(["SEVERITY", "KIND", "SUBJECT", "MESSAGE"], alerts.Select(a => (IReadOnlyList<string>)[a.Severity, a.Kind, a.Subject, a.Message]));
        });

        var poolFull = new Option<double?>("--pool-full") { Description = "alert when the pool is this full, in % of its capacity (1-100; default 85)" };
        var stalledJob = new Option<string?>("--stalled-job") { Description = "alert when a running job's progress has not moved for this long, e.g. 10m (1s-30d)" };
        var rpo = new Option<string?>("--rpo") { Description = "alert when a replica without a sync interval lags more than this, e.g. 1h or 2d (1s-30d); one with an interval may lag twice its interval" };
        var thresholds = new Command("thresholds", "Show the alert thresholds; with options, change them (admin; kept in the pool, they win over the config file)") { poolFull, stalledJob, rpo };
        thresholds.SetClientAction(async (p, client, json, ct) =>
        {
            var request = new UpdateAlertThresholdsRequest(p.GetValue(poolFull), p.GetValue(stalledJob), p.GetValue(rpo));
            var current = request == new UpdateAlertThresholdsRequest()
                ? await client.GetAlertThresholdsAsync(ct)
                : await client.SetAlertThresholdsAsync(request, ct);
            if (json)
            {
                Output.Json(current);
                return;
            }

            Output.Fields(
                ("pool full at", current.PoolFullPercent.ToString("0.##", CultureInfo.InvariantCulture) + "%"),
                ("stalled job after", current.StalledJob),
                ("replica RPO", current.Rpo),
                ("set in", current.Source == "api" ? "the pool (through the API)" : "the config file (defaults)"));
        });

        return new Command("alerts", "Alerts and their thresholds") { list, thresholds };
    }
}
