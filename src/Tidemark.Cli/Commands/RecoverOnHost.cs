using Tidemark.Api;
using Tidemark.Recovery;
using Tidemark.Recovery.Mail;

namespace Tidemark.Cli.Commands;

/// <summary>
/// `tidemark recover mail ... --host H`: the recovery runs as a job of the server on host H's agent
/// (docs/adr/0012) instead of on this host; this side only checks the options, starts the job, shows
/// its progress and prints its result like a local run. Nothing needs root or nbdfuse here.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal static class RecoverOnHost
{
    public sealed record Options(
        string Host,
        string Source,
        DateTimeOffset? Before,
        string? RestoreTo,
        string? Server,
        string Tls,
        string? Into,
        string? SendTo,
        string? SendFrom,
        string? Export,
        string ExportFormat,
        string MailRoot,
        string Format);

    public static async Task RunAsync(TidemarkClient client, Options o, MailSearchFilter filter, bool json, CancellationToken ct)
    {
        var request = ToRequest(o, filter);
        MailRecoveryResultDto result;
        var cliStart = SinceProcessStart();
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            result = await client.RecoverMailAsync(request, Output.ProgressBar(json), ct);
            await Console.Error.WriteLineAsync(Timings(cliStart, System.Diagnostics.Stopwatch.GetElapsedTime(started), result.Steps));
        }
        catch (TidemarkApiException e) when (e.Code == "cancelled")
        {
            throw new CliException($"{e.Message}; the view and the mounts on {o.Host} were taken down", CommandRunner.Refused);
        }

        foreach (var problem in result.TeardownProblems)
        {
            await Console.Error.WriteLineAsync($"warning: on host {result.Host}: {problem}");
        }

        var outcomes = result.Outcomes.Select(x => new RestoreOutcome(ToFound(x.Message), x.Result, x.Target, x.Detail)).ToList();
        if (json)
        {
            Output.Json(result);
        }
        else
        {
            RecoverCommands.Print(new MailRecoveryResult(result.Snapshot, result.SnapshotCreatedAt, [.. result.Matches.Select(ToFound)], outcomes, result.TeardownProblems), json: false);
        }

        var failed = outcomes.Count(x => x.Result == RestoreOutcome.Failed);
        if (failed > 0)
        {
            throw new CliException($"{failed} message(s) could not be put back (see the table)", CommandRunner.Refused);
        }
    }

    /// <summary>How long this process ran before now: the runtime's start, option parsing, finding the server.</summary>
    internal static TimeSpan SinceProcessStart()
    {
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        return DateTime.Now - self.StartTime;
    }

    /// <summary>
    /// Where the seconds went (issue 23), one line for stderr: this CLI's start, the job's steps on the
    /// server and the agent, and what the API and waiting for the job's end added around them.
    /// </summary>
    internal static string Timings(TimeSpan cliStart, TimeSpan job, IReadOnlyList<MailRecoveryStepDto>? steps)
    {
        static string Seconds(double s) => s.ToString("F2", System.Globalization.CultureInfo.InvariantCulture) + " s";
        var line = new System.Text.StringBuilder($"timings: cli start {Seconds(cliStart.TotalSeconds)}");
        if (steps is { Count: > 0 })
        {
            var server = steps.Where(s => s.Where == "server").ToList();
            var agent = steps.Where(s => s.Where == "agent").ToList();
            line.Append("; server: ").AppendJoin(", ", server.Select(s => $"{s.Step} {Seconds(s.Seconds)}"));
            if (agent.Count > 0)
            {
                line.Append("; agent: ").AppendJoin(", ", agent.Select(s => $"{s.Step} {Seconds(s.Seconds)}"));
            }

            // The job's start, the API calls and the wait for the job's end, around the server's steps.
            line.Append($"; api + job wait {Seconds(Math.Max(0, job.TotalSeconds - server.Sum(s => s.Seconds)))}");
        }
        else
        {
            line.Append($"; job {Seconds(job.TotalSeconds)} (the server gave no steps)");
        }

        return line.Append($"; total {Seconds(cliStart.TotalSeconds + job.TotalSeconds)}").ToString();
    }

    /// <summary>The options as the job's request; what only fits a local run is refused here (exit 2).</summary>
    internal static MailRecoveryJobRequest ToRequest(Options o, MailSearchFilter filter)
    {
        var at = o.Source.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0 && o.Before is not null)
        {
            throw new CliException($"give either VOLUME@SNAPSHOT or VOLUME --before DATE, not both ('{o.Source}' names a snapshot)");
        }

        if (at < 0 && o.Before is null)
        {
            throw new CliException($"'{o.Source}' is a volume: add --before DATE to use its newest snapshot taken before DATE, or name a snapshot as {o.Source}@SNAPSHOT");
        }

        MailTargetDto target;
        if (o.RestoreTo is { } mode)
        {
            if (o.Export is not null)
            {
                throw new CliException($"choose one of --restore-to {mode} and --export NAME");
            }

            if (mode == "imap" && filter.Users.Count == 0)
            {
                throw new CliException("restoring over IMAP needs --user: name the mailbox(es) to put messages back into");
            }

            var server = o.Server ?? throw new CliException(mode == "imap"
                ? "--restore-to imap needs --imap HOST:PORT (the production IMAP server, as the recovery host reaches it)"
                : "--restore-to smtp needs --smtp HOST:PORT (a mail server that accepts mail for --send-to)");
            try
            {
                ImapEndpoint.Parse(server, mode == "imap" ? "--imap" : "--smtp", mode == "imap" ? ImapEndpoint.DefaultPort : 25);
                if (mode == "smtp")
                {
                    SmtpSender.CheckAddresses(o.SendTo ?? throw new CliException($"--restore-to smtp needs --send-to ADDRESS (an administrator, or {SmtpSender.UserPlaceholder}@DOMAIN for each mailbox owner)"), o.SendFrom ?? "tidemark-recovery@localhost");
                }
            }
            catch (RecoveryException e)
            {
                throw new CliException(e.Message);
            }

            target = new MailTargetDto(mode, server, o.Tls, mode == "imap" ? o.Into : null, o.SendTo, o.SendFrom);
        }
        else if (o.Export is { } name)
        {
            if (name.Contains('/', StringComparison.Ordinal) || name.StartsWith('.'))
            {
                throw new CliException($"with --host, --export names a directory under the agent's recovered/ directory on {o.Host} (no '/', not starting with '.'), not '{name}'");
            }

            target = new MailTargetDto(MailTargetDto.Export, ExportName: name, ExportFormat: o.ExportFormat);
        }
        else
        {
            if (o.Into is not null || o.Server is not null || o.SendTo is not null)
            {
                throw new CliException("--into, --imap, --smtp and --send-to only act with --restore-to; without it this is a dry run");
            }

            target = new MailTargetDto();
        }

        var filterDto = new MailFilterDto(filter.Users, filter.Folder, filter.MessageId, filter.Subject, filter.From, filter.To, filter.Since, filter.Until, filter.HasAttachment);
        return at >= 0
            ? new MailRecoveryJobRequest(o.Host, Snapshot: o.Source, Filter: filterDto, Target: target, MailRoot: o.MailRoot, Format: o.Format)
            : new MailRecoveryJobRequest(o.Host, Volume: o.Source, Before: o.Before, Filter: filterDto, Target: target, MailRoot: o.MailRoot, Format: o.Format);
    }

    private static FoundMessage ToFound(MailMatchDto m) =>
        new(m.User, m.Folder, string.Empty, m.InternalDate, m.Date, m.From, m.To, m.Subject, m.MessageId, m.SizeBytes, m.Flags, m.Keywords, null);
}
