using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Api;
using Tidemark.Server.Events;
using Tidemark.Server.Jobs;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

public sealed class JobTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly EventLog _events;
    private readonly Pool _pool;
    private readonly JobManager _jobs;

    public JobTests()
    {
        _events = new EventLog(_temp.Combine("events.jsonl"), TimeProvider.System, NullLogger.Instance);
        _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 16L << 20 });
        _jobs = new JobManager(_pool, _events, TimeProvider.System);
    }

    public void Dispose()
    {
        _events.Dispose();
        _pool.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public async Task FinishedJobs_AndTheirOutcome_SurviveARestart()
    {
        var ok = _jobs.Start("pool.verify", null, "alice", cancellable: true, progress =>
        {
            progress.Unit = "pages";
            progress.SetTotal(10);
            progress.Advance(10);
            return new VerifyDto(true, [], 1, 2, 3, 4);
        });
        var failed = _jobs.Start("volume.delete", "db", "bob", cancellable: false, _ => throw new StorageException(StorageError.Busy, "db is exported"));
        await Task.WhenAll(ok.Task!, failed.Task!);

        var restarted = new JobManager(_pool, _events, TimeProvider.System);
        var okAgain = restarted.Get(ok.Id).ToDto();
        var failedAgain = restarted.Get(failed.Id).ToDto();

        Assert.Equal(("succeeded", 10L, 10L, "pages", "alice"), (okAgain.State, okAgain.Done, okAgain.Total, okAgain.Unit, okAgain.Actor));
        Assert.Equal(ok.ToDto().Result!.Value.GetRawText(), okAgain.Result!.Value.GetRawText());
        Assert.Equal(ok.FinishedAt, okAgain.FinishedAt);
        Assert.Equal(("failed", "db is exported", "busy"), (failedAgain.State, failedAgain.Error, failedAgain.ErrorCode));
        Assert.Equal(2, restarted.List().Count);
    }

    [Fact]
    public async Task JobRunningWhenTheServerStopped_IsShownAsInterrupted_WithAnEvent()
    {
        using var gate = new ManualResetEventSlim();
        var running = _jobs.Start("snapshot.delete", "db@monday", "alice", cancellable: true, progress =>
        {
            progress.Unit = "blocks";
            progress.Advance(5);
            gate.Wait();
            return null;
        });

        // A second manager over the same pool is what the next start sees after a crash mid-job.
        var restarted = new JobManager(_pool, _events, TimeProvider.System);
        var seen = restarted.Get(running.Id).ToDto();
        var again = new JobManager(_pool, _events, TimeProvider.System).Get(running.Id).ToDto();
        gate.Set();
        await running.Task!;

        Assert.Equal(("interrupted", "interrupted"), (seen.State, seen.ErrorCode));
        Assert.Contains("server stopped while this job ran", seen.Error, StringComparison.Ordinal);
        Assert.NotNull(seen.FinishedAt);
        Assert.Equal("interrupted", again.State);
        var evt = Assert.Single(_events.Query(kind: "job.snapshot.delete"), e => e.Outcome == "interrupted");
        Assert.Equal(("db@monday", "alice"), (evt.Subject, evt.Actor));
    }

    [Fact]
    public async Task Job_ReportsProgressThenSucceedsWithResultAndEvent()
    {
        using var gate = new ManualResetEventSlim();
        var job = _jobs.Start("pool.verify", null, "token:abc", cancellable: true, progress =>
        {
            progress.SetTotal(10);
            progress.Advance(4);
            gate.Wait();
            progress.Advance(6);
            return new VerifyDto(true, [], 0, 0, 0, 0);
        });
        await WaitUntil(() => job.Progress.Done == 4);

        var running = job.ToDto();
        gate.Set();
        await job.Task!;
        var done = job.ToDto();

        Assert.Equal("running", running.State);
        Assert.Equal(40, running.Percent);
        Assert.Equal("succeeded", done.State);
        Assert.Equal(100, done.Percent);
        Assert.True(done.Result!.Value.GetProperty("clean").GetBoolean());
        var recorded = Assert.Single(_events.Query(kind: "job"));
        Assert.Equal("job.pool.verify", recorded.Kind);
        Assert.Equal("token:abc", recorded.Actor);
    }

    [Fact]
    public async Task Cancel_CancellableJob_EndsCancelled()
    {
        var job = _jobs.Start("pool.verify", null, "server", cancellable: true, progress =>
        {
            progress.Cancellation.WaitHandle.WaitOne(TimeSpan.FromSeconds(30));
            progress.Cancellation.ThrowIfCancellationRequested();
            return null;
        });

        _jobs.Cancel(job.Id);
        await job.Task!;

        Assert.Equal("cancelled", job.ToDto().State);
        Assert.Equal("cancelled", Assert.Single(_events.Query(kind: "job")).Outcome);
    }

    [Fact]
    public async Task WaitForEnd_AnswersWhenTheJobEnds_NotAfterTheWait_AndAtOnceForAnEndedOne()
    {
        using var gate = new ManualResetEventSlim();
        var job = _jobs.Start("pool.verify", null, "server", cancellable: true, _ =>
        {
            gate.Wait();
            return null;
        });

        // A long poll of ten minutes: it can only have answered "succeeded" if the job's end woke it.
        var polled = _jobs.WaitForEndAsync(job.Id, TimeSpan.FromMinutes(10), CancellationToken.None);
        Assert.False(polled.IsCompleted);
        gate.Set();
        Assert.Equal("succeeded", (await polled.WaitAsync(TimeSpan.FromMinutes(2))).ToDto().State);
        Assert.Equal("succeeded", (await _jobs.WaitForEndAsync(job.Id, TimeSpan.FromMinutes(10), CancellationToken.None).WaitAsync(TimeSpan.FromMinutes(2))).ToDto().State);
        Assert.Throws<StorageException>(() => _jobs.WaitForEndAsync("nope", TimeSpan.Zero, CancellationToken.None).GetAwaiter().GetResult());
    }

    [Fact]
    public async Task RunAsync_CancelledWhileTheRequestWaits_AnswersAProblemDocument_409Cancelled()
    {
        using var started = new ManualResetEventSlim();
        var run = _jobs.RunAsync("pool.verify", null, "alice", cancellable: true, TimeSpan.FromSeconds(60), progress =>
        {
            progress.Unit = "pages";
            progress.Advance(3);
            started.Set();
            progress.Cancellation.WaitHandle.WaitOne(TimeSpan.FromSeconds(60));
            progress.Cancellation.ThrowIfCancellationRequested();
            return null;
        });
        started.Wait(TimeSpan.FromSeconds(60));
        var context = new DefaultHttpContext();
        context.Response.Body = new MemoryStream();

        await Problems.HandleAsync(context, async _ =>
        {
            _jobs.Cancel(Assert.Single(_jobs.List()).Id);
            await run;
        });

        context.Response.Body.Position = 0;
        var problem = await JsonSerializer.DeserializeAsync<ProblemDto>(context.Response.Body, ApiJson.Options);
        Assert.Equal((409, "cancelled", Problems.ContentType), (context.Response.StatusCode, problem!.Code, context.Response.ContentType?.Split(';')[0]));
        Assert.Contains("cancelled at the administrator's request after 3 pages", problem.Detail, StringComparison.Ordinal);
        Assert.Equal(("cancelled", "cancelled"), (Assert.Single(_jobs.List()).ToDto().State, Assert.Single(_jobs.List()).ToDto().ErrorCode));
    }

    [Fact]
    public async Task Problems_RequestAbortedByItsOwnClient_StaysSilent()
    {
        using var aborted = new CancellationTokenSource();
        await aborted.CancelAsync();
        var context = new DefaultHttpContext { RequestAborted = aborted.Token };
        context.Response.Body = new MemoryStream();

        await Assert.ThrowsAsync<JobCancelledException>(() => Problems.HandleAsync(context, _ => throw new JobCancelledException("job 1 was cancelled")));

        Assert.Equal(0, context.Response.Body.Length);
    }

    [Fact]
    public async Task Cancel_DeletionJob_IsRefusedAndJobFinishes()
    {
        using var gate = new ManualResetEventSlim();
        var job = _jobs.Start("snapshot.delete", "v@s", "server", cancellable: false, _ =>
        {
            gate.Wait();
            return null;
        });

        var refused = Assert.Throws<StorageException>(() => _jobs.Cancel(job.Id));
        gate.Set();
        await job.Task!;

        Assert.Equal(StorageError.Busy, refused.Error);
        Assert.Equal("succeeded", job.ToDto().State);
    }

    [Fact]
    public async Task RunAsync_FailureWithinWait_IsRethrown_AndUnknownJobIsNotFound()
    {
        var error = await Assert.ThrowsAsync<StorageException>(() => _jobs.RunAsync(
            "snapshot.delete", "v@s", "server", false, TimeSpan.FromSeconds(30), _ => throw new StorageException(StorageError.Held, "held")));

        Assert.Equal(StorageError.Held, error.Error);
        Assert.Equal("held", Assert.Single(_jobs.List()).ToDto().ErrorCode);
        Assert.Equal(StorageError.NotFound, Assert.Throws<StorageException>(() => _jobs.Get("nope")).Error);
    }

    [Fact]
    public async Task AsyncJob_HoldsNoThreadWhileItAwaits_ReportsProgress_AndItsOutcomeIsRecordedLikeASynchronousOne()
    {
        var resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ok = _jobs.StartAsyncJob("replica.sync", "mail", "alice", cancellable: true, async progress =>
        {
            progress.Unit = "bytes";
            progress.Advance(4096);
            await resume.Task;
            progress.Advance(4096);
            return new VerifyDto(true, [], 1, 2, 3, 4);
        });
        var cancelled = _jobs.StartAsyncJob("replica.sync", "db", "bob", cancellable: true, async progress =>
        {
            await Task.Delay(Timeout.Infinite, progress.Cancellation);
            return null;
        });
        await WaitUntil(() => ok.Progress.Done == 4096);

        // Both bodies are suspended in an await: their jobs are running, not finished.
        var running = (ok.ToDto().State, cancelled.ToDto().State, ok.Task!.IsCompleted);
        _jobs.Cancel(cancelled.Id);
        resume.SetResult();
        await Task.WhenAll(ok.Task!, cancelled.Task!);
        var failed = await Assert.ThrowsAsync<StorageException>(() => _jobs.RunAsyncJob("replica.reverse", "mail", "carol", true, TimeSpan.FromSeconds(30), async _ =>
        {
            await Task.Yield();
            throw new StorageException(StorageError.Held, "held");
        }));
        var restarted = new JobManager(_pool, _events, TimeProvider.System);

        Assert.Equal(("running", "running", false), running);
        Assert.Equal(("succeeded", 8192L, "bytes"), (restarted.Get(ok.Id).ToDto().State, restarted.Get(ok.Id).ToDto().Done, restarted.Get(ok.Id).ToDto().Unit));
        Assert.True(restarted.Get(ok.Id).ToDto().Result!.Value.GetProperty("clean").GetBoolean());
        Assert.Equal("cancelled", restarted.Get(cancelled.Id).ToDto().State);
        Assert.Equal(StorageError.Held, failed.Error);
        Assert.Equal(("failed", "held"), (restarted.List().Single(j => j.Kind == "replica.reverse").ToDto().State, restarted.List().Single(j => j.Kind == "replica.reverse").ToDto().ErrorCode));
        Assert.Equal(["cancelled", "ok"], _events.Query(kind: "job").Select(e => e.Outcome).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Server_SnapshotDeleteWithoutWait_Returns202JobThatCompletes_AndVerifyResultComesThroughJob()
    {
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"));
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("big", 256 << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest("big", "big", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 32M", export.Url!)).AssertSuccess();
        await client.CreateSnapshotAsync("big", "old");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x22 0 32M", export.Url!)).AssertSuccess();
        using var http = new HttpClient { BaseAddress = server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", server.Token);

        using var accepted = await http.DeleteAsync("api/v1/volumes/big/snapshots/old?wait=0");
        var job = (await accepted.Content.ReadFromJsonAsync<JobDto>(ApiJson.Options))!;
        var finished = await client.WaitForJobAsync(job.Id);
        using var badWait = await http.DeleteAsync("api/v1/volumes/big/snapshots/none?wait=-1");
        using var verifyAccepted = await http.PostAsync("api/v1/pool/verify?wait=0", null);
        var verifyJob = (await verifyAccepted.Content.ReadFromJsonAsync<JobDto>(ApiJson.Options))!;
        var report = await client.VerifyAsync();
        var list = (await CliProcess.RunAsync("job", "list", "--data", server.DataDirectory)).AssertSuccess().StandardOutput;
        var cancelDelete = await CliProcess.RunAsync("job", "cancel", job.Id, "--data", server.DataDirectory);

        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        Assert.Equal($"/api/v1/jobs/{job.Id}", accepted.Headers.Location?.OriginalString);
        Assert.Equal("snapshot.delete", job.Kind);
        Assert.Equal("big@old", job.Subject);
        Assert.Equal("succeeded", finished.State);
        Assert.Equal(2 * 8192, finished.Total); // 32 MiB = 8192 blocks only the snapshot kept
        Assert.Equal(finished.Total, finished.Done);
        Assert.Equal(HttpStatusCode.NotFound, badWait.StatusCode); // the snapshot is checked first
        Assert.Equal("pool.verify", verifyJob.Kind);
        Assert.True(report.Clean);
        Assert.Contains(job.Id, list, StringComparison.Ordinal);
        Assert.Equal(1, cancelDelete.ExitCode);
        Assert.Contains("cannot be cancelled", cancelDelete.StandardError, StringComparison.Ordinal);
        Assert.Empty(await client.ListSnapshotsAsync("big"));
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!condition())
        {
            await Task.Delay(10, timeout.Token);
        }
    }
}
