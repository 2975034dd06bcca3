using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;
using System.Text.Json;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;
using Tidemark.Server.Events;
using Tidemark.Server.Metrics;

namespace Tidemark.Server.Jobs;

/// <summary>
/// Runs long operations as jobs: each on its own thread (engine calls are synchronous) or, for
/// asynchronous work (<see cref="StartAsyncJob"/>), on the thread pool without holding a thread, with progress
/// from an <see cref="OperationProgress"/>, a cancellation request where the operation can stop safely,
/// and an event when it ends. Each job is a <see cref="JobRecord"/> in the pool, written at its start
/// and its end: the last <see cref="MaxFinishedJobs"/> finished ones stay listed across restarts, and
/// one that was running when the server stopped is shown as interrupted. (A deletion interrupted
/// by a restart is finished by the engine when the pool opens.)
/// </summary>
public sealed class JobManager : IMetricsSource
{
    public const int MaxFinishedJobs = 1000;

    /// <summary>Jobs as control records in the pool, named by job id. Version 1: <see cref="JobRecord"/>.</summary>
    public static readonly ControlKind<JobRecord> Kind = new("job", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });

    private readonly ConcurrentDictionary<string, Job> _jobs = new(StringComparer.Ordinal);
    private readonly ControlStore _control;
    private readonly EventLog _events;
    private readonly TimeProvider _time;

    public JobManager(Pool pool, EventLog events, TimeProvider time)
    {
        _control = pool.Control;
        _events = events;
        _time = time;
        Restore();
    }

    // Jobs of earlier runs come back as they ended; one still "running" in the store was cut off by
    // a crash or a stop, and is recorded as interrupted (once, with an event) instead of vanishing.
    private void Restore()
    {
        var interrupted = new ControlBatch();
        var now = _time.GetUtcNow();
        foreach (var (_, stored) in _control.List(Kind))
        {
            var record = stored;
            if (record.State == Job.StateName(JobState.Running))
            {
                record = record with
                {
                    State = Job.StateName(JobState.Interrupted),
                    FinishedAt = now,
                    Error = $"the server stopped while this job ran (after {record.Done} {record.Unit} of its last recorded progress); a deletion is finished by the engine when the pool opens, anything else can be started again",
                    ErrorCode = "interrupted",
                };
                interrupted.Put(Kind, record.Id, record);
                _events.Record($"job.{record.Kind}", record.Subject, record.Actor, $"job {record.Id} was interrupted: {record.Error}", "interrupted");
            }

            _jobs[record.Id] = Job.Restore(record, _time);
        }

        _control.Update(interrupted);
    }

    public IReadOnlyList<Job> List() => [.. _jobs.Values.OrderBy(j => j.StartedAt).ThenBy(j => j.Id, StringComparer.Ordinal)];

    public Job Get(string id) =>
        _jobs.TryGetValue(id, out var job)
            ? job
            : throw new StorageException(StorageError.NotFound, $"no job {id}; 'tidemark job list' shows the jobs (the last {MaxFinishedJobs} finished ones are kept)");

    /// <summary>Starts <paramref name="work"/> on its own thread and returns at once; its end is an event.</summary>
    public Job Start(string kind, string? subject, string actor, bool cancellable, Func<OperationProgress, object?> work) =>
        Start(kind, subject, actor, cancellable, Synchronous(work), detached: true);

    /// <summary>
    /// Starts asynchronous <paramref name="work"/> (a replication transfer, which waits on the network)
    /// and returns at once; its end is an event. It runs on the thread pool and holds no thread while
    /// it awaits. A name of its own: an overload would make every <c>_ =&gt; throw</c> body ambiguous.
    /// </summary>
    public Job StartAsyncJob(string kind, string? subject, string actor, bool cancellable, Func<OperationProgress, Task<object?>> work) =>
        Start(kind, subject, actor, cancellable, Asynchronous(work), detached: true);

    /// <summary>
    /// Starts a job and waits up to <paramref name="wait"/> for it: when it ended by then, its result is
    /// returned (and a failure rethrown, so the caller answers as if it had run inline); otherwise null
    /// and the caller answers 202 with the job.
    /// </summary>
    public Task<(Job Job, bool Finished, object? Result)> RunAsync(string kind, string? subject, string actor, bool cancellable, TimeSpan wait, Func<OperationProgress, object?> work) =>
        WaitAsync(Start(kind, subject, actor, cancellable, Synchronous(work), detached: false), wait);

    /// <summary><see cref="RunAsync"/> for asynchronous work (see <see cref="StartAsyncJob"/>).</summary>
    public Task<(Job Job, bool Finished, object? Result)> RunAsyncJob(string kind, string? subject, string actor, bool cancellable, TimeSpan wait, Func<OperationProgress, Task<object?>> work) =>
        WaitAsync(Start(kind, subject, actor, cancellable, Asynchronous(work), detached: false), wait);

    // Engine calls are synchronous and may run long: such a body gets a thread of its own rather
    // than a pool thread it would hold for minutes.
    private Func<Job, Task> Synchronous(Func<OperationProgress, object?> work) =>
        job => Task.Factory.StartNew(() => Execute(job, p => Task.FromResult(work(p))), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();

    // Task.Run: the body's synchronous start runs on the pool, not on the request that started it.
    private Func<Job, Task> Asynchronous(Func<OperationProgress, Task<object?>> work) =>
        job => Task.Run(() => Execute(job, work));

    private Job Start(string kind, string? subject, string actor, bool cancellable, Func<Job, Task> run, bool detached)
    {
        var job = new Job(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6)), kind, subject, actor, cancellable, _time) { Detached = detached };
        _control.Put(Kind, job.Id, job.ToRecord());
        _jobs[job.Id] = job;
        job.Task = run(job);
        Trim();
        return job;
    }

    private static async Task<(Job Job, bool Finished, object? Result)> WaitAsync(Job job, TimeSpan wait)
    {
        await Task.WhenAny(job.Task!, Task.Delay(wait)).ConfigureAwait(false);
        lock (job.Sync)
        {
            if (job.State == JobState.Running)
            {
                // From here the request's answer is 202, so the job's own end goes to the event log.
                job.Detached = true;
                return (job, false, null);
            }
        }

        if (job.State == JobState.Cancelled)
        {
            throw new JobCancelledException(job);
        }

        if (job.Exception is { } failure)
        {
            ExceptionDispatchInfo.Throw(failure);
        }

        return (job, true, job.ResultValue);
    }

    /// <summary>
    /// The job once it has ended, or as it is after <paramref name="wait"/> (a long poll: a client
    /// following a job learns of its end at once instead of at its next poll, issue 23).
    /// </summary>
    public async Task<Job> WaitForEndAsync(string id, TimeSpan wait, CancellationToken ct)
    {
        var job = Get(id);
        if (job.State == JobState.Running && job.Task is { } task && wait > TimeSpan.Zero)
        {
            // WhenAny never throws: the job's own failure is in its state, a dropped request just ends the wait.
            await Task.WhenAny(task, Task.Delay(wait, ct)).ConfigureAwait(false);
        }

        return job;
    }

    public Job Cancel(string id)
    {
        var job = Get(id);
        if (!job.Cancellable)
        {
            throw new StorageException(StorageError.Busy, $"job {id} ({job.Kind} {job.Subject}) cannot be cancelled: once started it must finish to leave the pool consistent");
        }

        job.RequestCancel();
        return job;
    }

    // A job answered within its request's wait is audited with that request; one that outlived it
    // (or was started detached) records its own end.
    private async Task Execute(Job job, Func<OperationProgress, Task<object?>> work)
    {
        string outcome, message;
        try
        {
            var result = await work(job.Progress).ConfigureAwait(false);
            lock (job.Sync)
            {
                job.Succeed(result);
            }

            (outcome, message) = ("ok", $"job {job.Id} succeeded after {job.Elapsed.TotalSeconds:F1} s ({job.Progress.Done} {job.Progress.Unit})");
        }
        catch (OperationCanceledException ex) when (job.Progress.Cancellation.IsCancellationRequested)
        {
            lock (job.Sync)
            {
                job.Fail(ex, cancelled: true);
            }

            (outcome, message) = ("cancelled", $"job {job.Id} cancelled after {job.Progress.Done} {job.Progress.Unit}");
        }
        catch (Exception ex)
        {
            lock (job.Sync)
            {
                job.Fail(ex, cancelled: false);
            }

            (outcome, message) = ("failed", $"job {job.Id} failed: {ex.Message}");
        }

        try
        {
            _control.Put(Kind, job.Id, job.ToRecord());
        }
        catch (StorageException ex)
        {
            // The pool went offline (or is closing): the record still says running, so the next
            // start shows the job as interrupted, which is what it was as far as the pool knows.
            message += $" (not recorded in the pool: {ex.Message})";
        }

        lock (job.Sync)
        {
            if (!job.Detached)
            {
                return;
            }
        }

        _events.Record($"job.{job.Kind}", job.Subject, job.Actor, message, outcome);
    }

    private void Trim()
    {
        var finished = _jobs.Values.Where(j => j.State != JobState.Running).OrderBy(j => j.FinishedAt).ToList();
        var forget = new ControlBatch();
        foreach (var old in finished.Take(Math.Max(0, finished.Count - MaxFinishedJobs)))
        {
            _jobs.TryRemove(old.Id, out _);
            forget.Delete(Kind, old.Id);
        }

        _control.Update(forget);
    }

    public void CreateInstruments(Meter meter)
    {
        meter.CreateObservableGauge(
            "tidemark_jobs",
            () =>
            {
                var jobs = List();
                return Enum.GetValues<JobState>().Select(state => new Measurement<int>(jobs.Count(j => j.State == state), new KeyValuePair<string, object?>("state", Job.StateName(state))));
            },
            description: "Jobs of this server run by state (finished ones: the last 1000).");
        meter.CreateObservableGauge(
            "tidemark_job_progress_ratio",
            () => List()
                .Where(j => j.State == JobState.Running && j.Progress.Total is > 0)
                .Select(job => new Measurement<double>(
                    Math.Min(1.0, (double)job.Progress.Done / job.Progress.Total!.Value),
                    new KeyValuePair<string, object?>("job", job.Id),
                    new KeyValuePair<string, object?>("kind", job.Kind),
                    new KeyValuePair<string, object?>("subject", job.Subject ?? ""))),
            description: "Fraction done of each running job whose total is known.");
    }
}

/// <summary>
/// A job its request waited for was cancelled by another request: the waiting request answers with
/// a problem document (409 <c>cancelled</c>), unlike a request its own client gave up on.
/// </summary>
public sealed class JobCancelledException : OperationCanceledException
{
    public JobCancelledException(Job job)
        : base($"job {job.Id} ({job.Kind}{(job.Subject is null ? "" : " " + job.Subject)}) was cancelled at the administrator's request after {job.Progress.Done} {job.Progress.Unit}; 'tidemark job show {job.Id}' shows how far it got", job.Exception)
    {
        JobId = job.Id;
    }

    public JobCancelledException()
    {
    }

    public JobCancelledException(string message)
        : base(message)
    {
    }

    public JobCancelledException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public string? JobId { get; }
}

public enum JobState
{
    Running,
    Succeeded,
    Failed,
    Cancelled,

    /// <summary>Was running when the server stopped (known from the pool at the next start).</summary>
    Interrupted,
}

/// <summary>One job: what it is, who started it, its progress and outcome.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A CancellationTokenSource without a timer holds no unmanaged resource, and cancel may be asked after the job ended.")]
public sealed class Job
{
    private readonly CancellationTokenSource _cancel = new();
    private readonly TimeProvider _time;
    private volatile JobState _state;

    internal Job(string id, string kind, string? subject, string actor, bool cancellable, TimeProvider time, DateTimeOffset? startedAt = null)
    {
        Id = id;
        Kind = kind;
        Subject = subject;
        Actor = actor;
        Cancellable = cancellable;
        _time = time;
        StartedAt = startedAt ?? time.GetUtcNow();
        Progress = new OperationProgress(_cancel.Token);
    }

    public string Id { get; }

    /// <summary>Guards the hand-over between the request that waits for the job and the job's end.</summary>
    internal Lock Sync { get; } = new();

    /// <summary>True once nobody waits for the job inline: its end is then an event of its own.</summary>
    internal bool Detached { get; set; }

    public string Kind { get; }

    public string? Subject { get; }

    public string Actor { get; }

    public bool Cancellable { get; }

    public DateTimeOffset StartedAt { get; }

    public DateTimeOffset? FinishedAt { get; private set; }

    public OperationProgress Progress { get; }

    public JobState State => _state;

    public Exception? Exception { get; private set; }

    public object? ResultValue { get; private set; }

    public Task? Task { get; internal set; }

    public TimeSpan Elapsed => (FinishedAt ?? _time.GetUtcNow()) - StartedAt;

    internal void RequestCancel() => _cancel.Cancel();

    // Outcome of a job of an earlier run, as recorded (its exception and result object are gone).
    private string? _storedError;
    private string? _storedErrorCode;
    private JsonElement? _storedResult;

    internal static Job Restore(JobRecord record, TimeProvider time)
    {
        var job = new Job(record.Id, record.Kind, record.Subject, record.Actor, record.Cancellable, time, record.StartedAt)
        {
            FinishedAt = record.FinishedAt,
            Detached = true,
            _storedError = record.Error,
            _storedErrorCode = record.ErrorCode,
            _storedResult = record.Result,
        };
        job._state = Enum.TryParse<JobState>(record.State, ignoreCase: true, out var state) ? state : JobState.Interrupted;
        job.Progress.Unit = record.Unit;
        job.Progress.Advance(record.Done);
        if (record.Total is { } total)
        {
            job.Progress.SetTotal(total);
        }

        return job;
    }

    internal JobRecord ToRecord()
    {
        var dto = ToDto();
        return new JobRecord(Id, Kind, Subject, Actor, Cancellable, dto.State, dto.Done, dto.Total, dto.Unit, StartedAt, FinishedAt, dto.Error, dto.ErrorCode, dto.Result);
    }

    internal void Succeed(object? result)
    {
        ResultValue = result;
        FinishedAt = _time.GetUtcNow();
        _state = JobState.Succeeded;
    }

    internal void Fail(Exception exception, bool cancelled)
    {
        Exception = exception;
        FinishedAt = _time.GetUtcNow();
        _state = cancelled ? JobState.Cancelled : JobState.Failed;
    }

    public static string StateName(JobState state) => state.ToString().ToLowerInvariant();

    public JobDto ToDto()
    {
        var state = _state;
        var done = Progress.Done;
        var total = Progress.Total;
        double? percent = state == JobState.Succeeded ? 100 : total is > 0 ? Math.Min(100, 100.0 * done / total.Value) : null;
        var eta = state == JobState.Running ? Progress.EtaSeconds(Elapsed) : null;

        var error = Exception is OperationCanceledException ? "cancelled at the administrator's request" : Exception?.Message ?? _storedError;
        var code = Exception switch
        {
            null => _storedErrorCode,
            StorageException s => ErrorCodes.For(s.Error),
            OperationCanceledException => ErrorCodes.Cancelled,
            _ => ErrorCodes.Internal,
        };
        JsonElement? result = ResultValue is null ? _storedResult : JsonSerializer.SerializeToElement(ResultValue, ResultValue.GetType(), ApiJson.Options);
        return new JobDto(Id, Kind, Subject, StateName(state), done, total, Progress.Unit, percent, eta, Cancellable, Actor, StartedAt, FinishedAt, error, code, result);
    }
}
