using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Api;
using Tidemark.Server.Replication;
using EventLog = Tidemark.Server.Events.EventLog;

namespace Tidemark.Server.Agents;

/// <summary>
/// A mail recovery run by the server as a job (docs/adr/0012): picks the snapshot, makes a throwaway
/// view of it and an NBD export of the view (as <see cref="SnapshotVerifier"/> does), asks the recovery
/// host's agent to mount, search and deliver, then deletes the export and the view, also when the
/// agent fails, cannot be reached, or the job is cancelled; the run is a <c>recovery.mail</c> event.
/// A replica's snapshots work the same way (the view is a lineage of its own; the replica is not written).
/// The view is marked as a recovery's (<see cref="RecoveryViews"/>): one left by a killed server goes at its next start.
/// </summary>
public sealed class MailRecoveryRunner(AgentChannel agents, RecoveryViews views)
{
    /// <summary>Mounting a large store, searching it and restoring many messages take minutes.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromMinutes(60);

    /// <summary>How long a cancelled recovery may take to take its mounts down on the host before the view goes anyway.</summary>
    public TimeSpan CancelGrace { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Checks a request before a job starts, so bad input is a 400, not a failed job; returns the snapshot.</summary>
    public SnapshotInfo Resolve(MailRecoveryJobRequest request)
    {
        if (string.IsNullOrEmpty(request.Host))
        {
            throw new StorageException(StorageError.InvalidArgument, "a mail recovery job needs the recovery host whose agent mounts the view ('--host NAME'; 'tidemark host list' shows them)");
        }

        agents.Hosts.Get(request.Host);
        CheckTarget(request.Target ?? new MailTargetDto());
        if (request.Snapshot is { Length: > 0 } address)
        {
            if (request.Volume is not null || request.Before is not null)
            {
                throw new StorageException(StorageError.InvalidArgument, $"give either a snapshot ({address}) or a volume with a date before which to take its newest snapshot, not both");
            }

            return agents.Pool.GetSnapshot(address);
        }

        if (string.IsNullOrEmpty(request.Volume) || request.Before is not { } before)
        {
            throw new StorageException(StorageError.InvalidArgument, "a mail recovery reads a snapshot: give the snapshot (VOLUME@SNAPSHOT), or the volume and a date (the newest snapshot taken before it)");
        }

        var snapshots = agents.Pool.ListSnapshots(request.Volume);
        return snapshots.Where(s => s.CreatedAt < before).MaxBy(s => s.CreatedAt)
            ?? throw new StorageException(StorageError.NotFound, $"volume {request.Volume} has no snapshot taken before {before:yyyy-MM-dd HH:mm:ss zzz} ({snapshots.Count} snapshots; 'tidemark snapshot list {request.Volume}' shows them)");
    }

    /// <summary>
    /// What the server can refuse at once (the agent checks again, and alone knows its credentials):
    /// the kind of target, and an export name that could leave the host's recovered/ directory.
    /// </summary>
    private static void CheckTarget(MailTargetDto target)
    {
        if (target.Kind is not (MailTargetDto.List or MailTargetDto.Imap or MailTargetDto.Smtp or MailTargetDto.Export))
        {
            throw new StorageException(StorageError.InvalidArgument, "the restore target's kind is list, imap, smtp or export");
        }

        if (target.Kind is MailTargetDto.Imap or MailTargetDto.Smtp && string.IsNullOrEmpty(target.Address))
        {
            throw new StorageException(StorageError.InvalidArgument, $"a restore by {target.Kind} needs the server's HOST:PORT (address)");
        }

        if (target.Kind == MailTargetDto.Export && (target.ExportName is not { Length: > 0 and <= 100 } name || name.StartsWith('.') || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            throw new StorageException(StorageError.InvalidArgument, "the export name must be one directory name (letters, digits, '-', '_', '.'; not starting with '.'): exports go under the recovery host's recovered/ directory");
        }
    }

    public async Task<MailRecoveryResultDto> RunAsync(string jobId, MailRecoveryJobRequest request, SnapshotInfo snapshot, string actor, OperationProgress progress, CancellationToken ct)
    {
        var host = agents.Hosts.Get(request.Host);
        var target = request.Target ?? new MailTargetDto();
        var destination = Describe(target);
        progress.Unit = "steps";
        progress.SetTotal(3);

        // Named like a verification's view, so an operator who finds one knows what it is for; marked
        // before it is made (RecoveryViews), so one left by a killed server goes at the next start;
        // the random part keeps a guessing NBD client from finding the export.
        var stamp = agents.Time.GetUtcNow().UtcDateTime.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        var view = $"recover-{(snapshot.Volume.Length > 20 ? snapshot.Volume[..20] : snapshot.Volume)}-{stamp}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
        var steps = new List<MailRecoveryStepDto>();
        MailRecoveryResultDto? result = null;
        string? error = null;
        var deferred = false;
        var started = Stopwatch.GetTimestamp();
        views.Create(snapshot.Address, view, $"mail recovery job {jobId} by {actor}");
        try
        {
            var export = agents.Exports.Create(new CreateExportRequest(Target: view, Name: view));
            try
            {
                var url = export.Url ?? throw new StorageException(StorageError.Unsupported, "this server has no NBD listener, so an agent cannot attach a view; start it with an NBD address");
                steps.Add(Step("view + export", started));
                progress.Advance(1);
                var called = Stopwatch.GetTimestamp();
                using var link = agents.Open(host, CallTimeout);
                var call = link.RecoverMailAsync(
                    new AgentMailRecoveryRequest(jobId, snapshot.Address, snapshot.CreatedAt, url, request.Filter ?? new MailFilterDto(), target, request.MailRoot ?? "/", request.Format ?? "auto", snapshot.Id, AnswerBeforeTeardown: true),
                    CancellationToken.None);

                // A cancel is passed on to the agent, and its answer still awaited (within a grace), so
                // the view is deleted only after the host has let go of it.
                using var grace = new CancellationTokenSource();
                using (ct.Register(() =>
                {
                    _ = CancelOnAgentAsync(host, jobId);
                    grace.CancelAfter(CancelGrace);
                }))
                {
                    result = await call.WaitAsync(grace.Token);
                }

                steps.Add(Step("agent call", called));
                steps.AddRange(result.Steps ?? []);
                progress.Advance(1);

                // The messages are where they went: the job answers now, and the agent's teardown,
                // then the export's and the view's deletion follow in the background (always; awaited
                // at the server's stop). The event is recorded once all of it is done.
                if (!ct.IsCancellationRequested)
                {
                    deferred = true;
                    Track(CleanUpAfterAnswerAsync(host, jobId, view, snapshot.Address, destination, result, actor));
                }
            }
            finally
            {
                if (!deferred)
                {
                    agents.Exports.Delete(view);
                }
            }
        }
        catch (Exception ex) when (ex is StorageException or OperationCanceledException)
        {
            if (ct.IsCancellationRequested)
            {
                // Whatever the agent answered to the cancel, the job ends as cancelled.
                error = "cancelled at the administrator's request";
                throw new OperationCanceledException(error, ex, ct);
            }

            error = ex.Message;
            throw;
        }
        finally
        {
            if (!deferred)
            {
                DeleteView(view);
                Record(snapshot.Address, host.Name, destination, result, error, actor);
            }
        }

        progress.Advance(1);
        ct.ThrowIfCancellationRequested();
        return result! with { Steps = steps };
    }

    private readonly Lock _cleanupsLock = new();
    private readonly HashSet<Task> _cleanups = [];

    /// <summary>Waits for the clean-ups that run after a job answered (at the server's stop, before the pool closes).</summary>
    public async Task WhenCleanedUpAsync()
    {
        Task[] pending;
        lock (_cleanupsLock)
        {
            pending = [.. _cleanups];
        }

        await Task.WhenAll(pending);
    }

    private void Track(Task cleanup)
    {
        lock (_cleanupsLock)
        {
            _cleanups.Add(cleanup);
        }

        _ = cleanup.ContinueWith(
            done =>
            {
                lock (_cleanupsLock)
                {
                    _cleanups.Remove(done);
                }
            },
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    /// <summary>
    /// After a job answered: waits for the agent to take its mounts down (within the cancel grace: an
    /// agent that does not answer must not keep the view forever), then deletes the export and the
    /// view and records the recovery, with any teardown problem, as its event. Never throws.
    /// </summary>
    private async Task CleanUpAfterAnswerAsync(HostRecord host, string jobId, string view, string address, string destination, MailRecoveryResultDto result, string actor)
    {
        await Task.Yield();
        var started = Stopwatch.GetTimestamp();
        var problems = new List<string>(result.TeardownProblems);
        try
        {
            using var link = agents.Open(host, CancelGrace);
            var teardown = await link.WaitForRecoveryTeardownAsync(jobId, CancellationToken.None);
            problems.AddRange(teardown.TeardownProblems);
        }
        catch (StorageException ex)
        {
            // An agent that does not know the call (older) tore down before it answered.
            problems.Add($"the end of the teardown on host {host.Name} is unknown ({ex.Message})");
        }

        try
        {
            agents.Exports.Delete(view);
        }
        catch (StorageException ex)
        {
            problems.Add($"export {view} not deleted ({ex.Message}): tidemark export delete {view}");
        }

        DeleteView(view);
        foreach (var problem in problems)
        {
            AgentsLog.RecoveryCleanupProblem(agents.Logger, jobId, problem);
        }

        AgentsLog.RecoveryCleanedUp(agents.Logger, jobId, Stopwatch.GetElapsedTime(started).TotalSeconds);
        Record(address, host.Name, destination, result with { TeardownProblems = problems }, null, actor);
    }

    private void DeleteView(string view)
    {
        try
        {
            agents.Pool.DeleteVolume(view);
            views.Forget(view);
        }
        catch (StorageException ex)
        {
            // Still marked: the next start deletes it.
            AgentsLog.RecoveryViewNotDeleted(agents.Logger, view, ex.Message);
            agents.Events.Record("volume.delete", view, "server", $"recovery view not deleted: {ex.Message}; 'tidemark view delete {view}'", "failed");
        }
    }

    private static MailRecoveryStepDto Step(string name, long started) => new(name, Math.Round(Stopwatch.GetElapsedTime(started).TotalSeconds, 3), "server");

    private async Task CancelOnAgentAsync(HostRecord host, string jobId)
    {
        try
        {
            using var link = agents.Open(host, TimeSpan.FromSeconds(30));
            await link.CancelRecoveryAsync(jobId, CancellationToken.None);
        }
        catch (StorageException ex)
        {
            AgentsLog.RecoveryCancelFailed(agents.Logger, jobId, host.Name, ex.Message);
        }
    }

    /// <summary>The recovery as a <c>recovery.mail</c> event, in the format of a CLI's report (RecoveryEndpoints).</summary>
    private void Record(string address, string host, string destination, MailRecoveryResultDto? result, string? error, string actor)
    {
        var outcomes = result?.Outcomes ?? [];
        var lines = outcomes.Count > 0
            ? outcomes.Select(o => Line(o.Message, o.Result))
            : (result?.Matches ?? []).Select(m => Line(m, "matched"));
        var report = new RecoveryReportDto(
            OneLine($"{destination} on host {host}"),
            result?.Matches.Count ?? 0,
            outcomes.Count(o => o.Result == "restored"),
            outcomes.Count(o => o.Result == "skipped-duplicate"),
            outcomes.Count(o => o.Result == "failed"),
            [.. lines.Take(RecoveryReportDto.MaxMessages)],
            error is null ? null : OneLine(error));
        agents.Events.Record("recovery.mail", address, actor, RecoveryEndpoints.Message(report), report.Error is null && report.Failed == 0 ? "ok" : "failed");

        static string Line(MailMatchDto m, string result) => OneLine($"{m.User}/{m.Folder} {m.MessageId ?? "(no Message-ID)"}: {result}");
    }

    internal static string Describe(MailTargetDto target) => target.Kind switch
    {
        MailTargetDto.Imap => $"imap {target.Address}" + (target.Into is null ? " (original folders)" : $" into {target.Into}"),
        MailTargetDto.Smtp => $"smtp {target.Address} to {target.SendTo}",
        MailTargetDto.Export => $"export {target.ExportName} ({target.ExportFormat ?? "eml"})",
        _ => "list (dry run)",
    };

    /// <summary>Header text from a snapshot is not trusted: one line, capped, as the report endpoint demands.</summary>
    private static string OneLine(string text)
    {
        var line = new string([.. text.Select(c => char.IsControl(c) ? ' ' : c)]);
        return line.Length <= RecoveryReportDto.MaxTextLength ? line : line[..(RecoveryReportDto.MaxTextLength - 1)] + "…";
    }
}
