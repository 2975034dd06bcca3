using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class JobCommands
{
    public static Command Create()
    {
        var list = new Command("list", "List the jobs of this server run (running and the last finished ones)");
        list.SetClientAction(async (_, client, json, ct) => Print(await client.ListJobsAsync(ct), json));

        var showId = new Argument<string>("id") { Description = "job id (from 'tidemark job list')" };
        var show = new Command("show", "Show one job's progress or outcome") { showId };
        show.SetClientAction(async (p, client, json, ct) => Print([await client.GetJobAsync(p.GetValue(showId)!, ct)], json));

        var waitId = new Argument<string>("id") { Description = "job id" };
        var wait = new Command("wait", "Follow a job with a progress bar until it ends; exit code 1 unless it succeeded") { waitId };
        wait.SetClientAction(async (p, client, json, ct) =>
        {
            var job = await client.WaitForJobAsync(p.GetValue(waitId)!, Output.ProgressBar(json), ct);
            Print([job], json);
            if (job.State != "succeeded")
            {
                throw new TidemarkApiException(System.Net.HttpStatusCode.Conflict, job.ErrorCode ?? "failed", $"job {job.Id} {job.State}: {job.Error}");
            }
        });

        var cancelId = new Argument<string>("id") { Description = "job id" };
        var cancel = new Command("cancel", "Ask a running job to stop (verify can stop; a deletion always finishes)") { cancelId };
        cancel.SetClientAction(async (p, client, json, ct) => Print([await client.CancelJobAsync(p.GetValue(cancelId)!, ct)], json));

        return new Command("job", "Long operations: progress, outcome, cancel") { list, show, wait, cancel };
    }

    private static void Print(IReadOnlyList<JobDto> jobs, bool json)
    {
        if (json)
        {
            Output.Json(jobs.Count == 1 ? jobs[0] : (object)jobs);
            return;
        }

        Output.Table(
            ["JOB", "KIND", "SUBJECT", "STATE", "PROGRESS", "STARTED", "RESULT"],
            jobs.Select(j => (IReadOnlyList<string>)[
                j.Id,
                j.Kind,
                j.Subject ?? "-",
                j.State,
                j.Percent is { } pct ? pct.ToString("F1", CultureInfo.InvariantCulture) + "%" : $"{j.Done.ToString(CultureInfo.InvariantCulture)} {j.Unit}",
                Output.Time(j.StartedAt),
                j.Error ?? (j.EtaSeconds is { } eta ? $"ETA {eta:F0}s" : "")]));
    }
}
