using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Events;
using Tidemark.Server.Jobs;

namespace Tidemark.Server.Api;

/// <summary>
/// /api/v1/jobs: long operations with progress and cancel. Endpoints that start one take <c>wait</c>
/// (seconds, default <see cref="DefaultWaitSeconds"/>): a job that ends within it answers like an
/// ordinary request; one still running answers 202 Accepted with the job and its Location.
/// </summary>
public static class JobEndpoints
{
    public const double DefaultWaitSeconds = 5;
    public const double MaxWaitSeconds = 300;

    /// <summary>The longest a GET of a job waits for its end: short enough that a progress bar still moves.</summary>
    public const double MaxPollWaitSeconds = 30;

    public static void MapJobApi(this IEndpointRouteBuilder app)
    {
        var jobs = app.MapGroup("/api/v1/jobs").WithTags("jobs");
        jobs.MapGet("/", (JobManager j) => TypedResults.Ok(j.List().Select(x => x.ToDto()).ToList()));
        // ?wait=SECONDS (at most MaxPollWaitSeconds): answers as soon as the job ends, or with its state after the wait.
        jobs.MapGet("/{id}", async (JobManager j, string id, double? wait, CancellationToken aborted) =>
        {
            var seconds = wait ?? 0;
            if (double.IsNaN(seconds) || seconds < 0 || seconds > MaxPollWaitSeconds)
            {
                throw new StorageException(StorageError.InvalidArgument, $"wait must be between 0 and {MaxPollWaitSeconds} seconds, not {seconds}");
            }

            return TypedResults.Ok((await j.WaitForEndAsync(id, TimeSpan.FromSeconds(seconds), aborted)).ToDto());
        });
        jobs.MapPost("/{id}/cancel", (JobManager j, string id) => TypedResults.Ok(j.Cancel(id).ToDto())).WithName("job.cancel");
    }

    /// <summary>Runs <paramref name="work"/> as a job and answers with <paramref name="done"/> if it ends within the wait, else 202.</summary>
    public static Task<Results<TDone, Accepted<JobDto>>> RunAsync<TDone>(
        HttpContext context,
        JobManager jobs,
        string kind,
        string? subject,
        bool cancellable,
        double? wait,
        Func<OperationProgress, object?> work,
        Func<object?, TDone> done)
        where TDone : IResult =>
        AnswerAsync(jobs.RunAsync(kind, subject, Actor(context), cancellable, Wait(wait), work), done);

    /// <summary><see cref="RunAsync"/> for asynchronous work (<see cref="JobManager.StartAsyncJob"/>): no thread is held while it awaits.</summary>
    public static Task<Results<TDone, Accepted<JobDto>>> RunAsyncJob<TDone>(
        HttpContext context,
        JobManager jobs,
        string kind,
        string? subject,
        bool cancellable,
        double? wait,
        Func<OperationProgress, Task<object?>> work,
        Func<object?, TDone> done)
        where TDone : IResult =>
        AnswerAsync(jobs.RunAsyncJob(kind, subject, Actor(context), cancellable, Wait(wait), work), done);

    private static TimeSpan Wait(double? wait)
    {
        var seconds = wait ?? DefaultWaitSeconds;
        if (double.IsNaN(seconds) || seconds < 0 || seconds > MaxWaitSeconds)
        {
            throw new StorageException(StorageError.InvalidArgument, $"wait must be between 0 and {MaxWaitSeconds} seconds, not {seconds}");
        }

        return TimeSpan.FromSeconds(seconds);
    }

    private static string Actor(HttpContext context) => context.Items[AuditMiddleware.ActorItem] as string ?? "anonymous";

    private static async Task<Results<TDone, Accepted<JobDto>>> AnswerAsync<TDone>(Task<(Job Job, bool Finished, object? Result)> running, Func<object?, TDone> done)
        where TDone : IResult
    {
        var (job, finished, result) = await running;
        if (finished)
        {
            return done(result);
        }

        return TypedResults.Accepted($"/api/v1/jobs/{job.Id}", job.ToDto());
    }
}
