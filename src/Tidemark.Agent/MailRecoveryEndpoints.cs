using System.Collections.Concurrent;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Recovery;
using Tidemark.Recovery.Mail;

namespace Tidemark.Agent;

/// <summary>
/// The recovery host's part of a mail recovery job (docs/adr/0012): the server made a view of the
/// snapshot and exported it; this agent attaches it, mounts it read-only, searches and delivers with
/// the same code as <c>tidemark recover mail</c>, tears it all down, and answers with the result.
/// The IMAP master user and the SMTP login are files in the agent's directory
/// (<see cref="MailRecoveryJob.ImapMasterFile"/>, <see cref="MailRecoveryJob.SmtpLoginFile"/>, mode 600),
/// never part of a request; exports go under the agent's <c>recovered/</c> directory only.
/// </summary>
public sealed class MailRecoveryService(AgentConfig config, string agentDirectory, ILogger logger) : IDisposable
{
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new(StringComparer.Ordinal);

    // Recoveries that answered before their teardown (AnswerBeforeTeardown), by id, until the server asked for their end.
    private readonly ConcurrentDictionary<string, Task<AgentTeardownDto>> _teardowns = new(StringComparer.Ordinal);

    // One index build at a time on this host (the server queues per host too): each mounts a view
    // and reads every header of a store, which a second build at once would only slow down.
    private readonly SemaphoreSlim _indexing = new(1, 1);

    public string ExportRoot => Path.Combine(agentDirectory, "recovered");

    public async Task<MailRecoveryResultDto> RunAsync(AgentMailRecoveryRequest request, CancellationToken requestAborted)
    {
        if (string.IsNullOrEmpty(request.Id) || request.Id.Length > 64 || !request.Id.All(char.IsAsciiLetterOrDigit))
        {
            throw new StorageException(StorageError.InvalidArgument, "a recovery carries its job's id (letters and digits)");
        }

        // Cancelled by the server's cancel call, or when the server goes away mid-call; the
        // teardown of the mount runs to its end either way (MountedSnapshot). Not disposed here when
        // the answer goes before the teardown: the run still holds it until its end.
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
        if (!_running.TryAdd(request.Id, cancel))
        {
            cancel.Dispose();
            throw new StorageException(StorageError.AlreadyExists, $"recovery {request.Id} already runs on this host");
        }

        var log = new LogWriter(logger, request.Id);
        Task<MailRecoveryResultDto>? run = null;
        try
        {
            if (!OperatingSystem.IsLinux())
            {
                throw new StorageException(StorageError.Unsupported, "a mail recovery mounts a view with nbdfuse and a loop device: it needs a Linux host");
            }

            AgentLog.RecoveryStarts(logger, request.Id, request.Snapshot);
            var delivered = new TaskCompletionSource<MailRecoveryResultDto>(TaskCreationOptions.RunContinuationsAsynchronously);
            run = MailRecoveryJob.RunAsync(request, config.HostName, agentDirectory, ExportRoot, log, cancel.Token, request.AnswerBeforeTeardown ? r => delivered.TrySetResult(r) : null);

            // Answered as soon as the messages are delivered when the server asks for it (issue 23:
            // the message is in the mailbox; the teardown's seconds need not be the user's): the
            // teardown then goes on here, and the server waits for it (recoveries/ID/teardown) before
            // it deletes the view.
            if (await Task.WhenAny(delivered.Task, run) == delivered.Task && !run.IsCompleted)
            {
                var answer = await delivered.Task; // already complete: no wait
                _teardowns[request.Id] = Finish(request, run, cancel);
                AgentLog.RecoveryAnsweredBeforeTeardown(logger, request.Id, request.Snapshot, answer.Matches.Count, answer.Outcomes.Count);
                run = null;
                return answer;
            }

            var result = await run;
            AgentLog.RecoveryDone(logger, request.Id, request.Snapshot, result.Matches.Count, result.Outcomes.Count);
            return result;
        }
        catch (RecoveryException ex)
        {
            AgentLog.RecoveryFailed(logger, request.Id, request.Snapshot, ex.Message);
            throw new StorageException(
                ex.Failure switch
                {
                    RecoveryFailure.BadInput => StorageError.InvalidArgument,
                    _ => StorageError.Unavailable,
                },
                $"on host {config.HostName}: {ex.Message}",
                ex);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested && !requestAborted.IsCancellationRequested)
        {
            throw new StorageException(StorageError.Busy, $"recovery {request.Id} was cancelled on host {config.HostName}; its mounts are taken down");
        }
        finally
        {
            if (run is not null || !_teardowns.ContainsKey(request.Id))
            {
                _running.TryRemove(request.Id, out _);
                cancel.Dispose();
            }
        }
    }

    /// <summary>The rest of a recovery that answered before its teardown: awaits it, logs it, and lets go of its id.</summary>
    private async Task<AgentTeardownDto> Finish(AgentMailRecoveryRequest request, Task<MailRecoveryResultDto> run, CancellationTokenSource cancel)
    {
        try
        {
            var result = await run;
            AgentLog.RecoveryTornDown(logger, request.Id, request.Snapshot);
            return new AgentTeardownDto(true, result.TeardownProblems, [.. (result.Steps ?? []).Where(s => s.Step == "teardown")]);
        }
        catch (Exception ex) when (ex is RecoveryException or IOException or OperationCanceledException or UnauthorizedAccessException)
        {
            AgentLog.RecoveryTeardownFailed(logger, request.Id, request.Snapshot, ex.Message);
            return new AgentTeardownDto(true, [$"teardown on host {config.HostName} failed: {ex.Message}"], []);
        }
        finally
        {
            _running.TryRemove(request.Id, out _);
            cancel.Dispose();
        }
    }

    /// <summary>
    /// Waits for the teardown of a recovery that answered before it (the server deletes the view only
    /// after this), then forgets it; an id with no teardown pending answers at once.
    /// </summary>
    public async Task<AgentTeardownDto> WaitForTeardownAsync(string id, CancellationToken ct)
    {
        if (!_teardowns.TryGetValue(id, out var teardown))
        {
            return new AgentTeardownDto(false, [], []);
        }

        var done = await teardown.WaitAsync(ct);
        _teardowns.TryRemove(id, out _);
        return done;
    }

    /// <summary>
    /// Builds this host's header index of a snapshot of the mail stores it declares on the volume
    /// (docs/adr/0012, "Index after a snapshot"); without an export URL only answers which stores
    /// those are. Cancelled like a recovery, by the job's id.
    /// </summary>
    public async Task<MailIndexResultDto> IndexAsync(AgentMailIndexRequest request, CancellationToken requestAborted)
    {
        if (string.IsNullOrEmpty(request.Id) || request.Id.Length > 64 || !request.Id.All(char.IsAsciiLetterOrDigit))
        {
            throw new StorageException(StorageError.InvalidArgument, "an index build carries its job's id (letters and digits)");
        }

        if (string.IsNullOrEmpty(request.Snapshot) || request.Snapshot.Length > 512 || request.Snapshot.Any(char.IsControl) || request.SnapshotId == Guid.Empty)
        {
            throw new StorageException(StorageError.InvalidArgument, "an index build names the snapshot and its id");
        }

        if (!OperatingSystem.IsLinux())
        {
            throw new StorageException(StorageError.Unsupported, "an index build mounts a view with nbdfuse and a loop device: it needs a Linux host");
        }

        var stores = StoresOn(config, request.Volume);
        if (request.ExportUrl is null || stores.Count == 0)
        {
            // A loop, not a lambda: the platform guard above does not reach into a lambda (CA1416).
            var described = new List<string>();
            foreach (var store in stores)
            {
                described.Add($"{store.Name}: {store.Format} /{store.MailRoot}");
            }

            return new MailIndexResultDto(request.Snapshot, config.HostName, described, 0, 0, 0, []);
        }

        // Only an NBD export reaches nbdfuse: never a local file or another scheme from the wire.
        if (request.ExportUrl.Length > 2048 || !(request.ExportUrl.StartsWith("nbd://", StringComparison.Ordinal) || request.ExportUrl.StartsWith("nbds://", StringComparison.Ordinal)))
        {
            throw new StorageException(StorageError.InvalidArgument, "an index build needs the nbd:// URL of the view's export");
        }

        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
        if (!_running.TryAdd(request.Id, cancel))
        {
            throw new StorageException(StorageError.AlreadyExists, $"job {request.Id} already runs on this host");
        }

        var log = new LogWriter(logger, request.Id);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            await _indexing.WaitAsync(cancel.Token);
            try
            {
                AgentLog.IndexStarts(logger, request.Id, request.Snapshot);
                var result = await MailIndexBuilder.BuildAttachedAsync(request.ExportUrl, request.Snapshot, request.SnapshotCreatedAt, request.SnapshotId, stores, Path.Combine(agentDirectory, MailRecoveryJob.IndexDirectoryName), log, cancel.Token);
                AgentLog.IndexDone(logger, request.Id, request.Snapshot, string.Join("; ", result.Stores));
                return new MailIndexResultDto(request.Snapshot, config.HostName, result.Stores, result.Users, result.Messages, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, result.TeardownProblems);
            }
            finally
            {
                _indexing.Release();
            }
        }
        catch (RecoveryException ex)
        {
            AgentLog.IndexFailed(logger, request.Id, request.Snapshot, ex.Message);
            throw new StorageException(ex.Failure == RecoveryFailure.BadInput ? StorageError.InvalidArgument : StorageError.Unavailable, $"on host {config.HostName}: {ex.Message}", ex);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested && !requestAborted.IsCancellationRequested)
        {
            throw new StorageException(StorageError.Busy, $"index build {request.Id} was cancelled on host {config.HostName}; its mounts are taken down");
        }
        finally
        {
            _running.TryRemove(request.Id, out _);
        }
    }

    /// <summary>The mail stores whose mail root is on a mount this host declares for <paramref name="volume"/>, with the root relative to that file system.</summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    internal static IReadOnlyList<MailIndexStore> StoresOn(AgentConfig config, string volume)
    {
        var mounts = config.Mounts.Where(m => m.Volume == volume).ToList();
        var stores = new List<MailIndexStore>();
        foreach (var store in config.Mail)
        {
            var root = LocalMounts.Normalize(store.MailRoot);
            var mount = mounts
                .Where(m => root == LocalMounts.Normalize(m.Path) || root.StartsWith(LocalMounts.Normalize(m.Path) + "/", StringComparison.Ordinal))
                .OrderByDescending(m => m.Path.Length)
                .FirstOrDefault();
            if (mount is not null)
            {
                var relative = Path.GetRelativePath(LocalMounts.Normalize(mount.Path), root);
                stores.Add(new MailIndexStore(store.Name, relative == "." ? string.Empty : relative, store.Format));
            }
        }

        return stores;
    }

    public void Dispose() => _indexing.Dispose();

    /// <summary>Asks a running recovery to stop; false when none runs under that id (already ended).</summary>
    public bool Cancel(string id)
    {
        if (_running.TryGetValue(id, out var cancel))
        {
            try
            {
                cancel.Cancel();
            }
            catch (ObjectDisposedException)
            {
                return false;
            }

            AgentLog.JobCancelRequested(logger, id);
            return true;
        }

        return false;
    }

    /// <summary>The recovery's step lines ("mounted in", "searched in") into the agent's log.</summary>
    private sealed class LogWriter(ILogger logger, string id) : StringWriter(CultureInfo.InvariantCulture)
    {
        public override void WriteLine(string? value) => AgentLog.RecoveryStep(logger, id, value);

        public override Task WriteLineAsync(string? value)
        {
            WriteLine(value);
            return Task.CompletedTask;
        }
    }
}

public static class MailRecoveryEndpoints
{
    /// <summary>POST recoveries/mail runs one; POST mail-index builds a snapshot's header index; POST recoveries/ID/cancel stops either (the server's job cancel); POST recoveries/ID/teardown waits for the teardown of one that answered first.</summary>
    public static void MapMailRecovery(this RouteGroupBuilder api, AgentConfig config, string agentDirectory, ILogger logger)
    {
        var service = new MailRecoveryService(config, agentDirectory, logger);
        api.MapPost("/recoveries/mail", async (AgentMailRecoveryRequest request, CancellationToken requestAborted) =>
            TypedResults.Ok(await service.RunAsync(request, requestAborted)));
        api.MapPost("/mail-index", async (AgentMailIndexRequest request, CancellationToken requestAborted) =>
            TypedResults.Ok(await service.IndexAsync(request, requestAborted)));
        api.MapPost("/recoveries/{id}/cancel", (string id) => TypedResults.Ok(new { cancelled = service.Cancel(id) }));
        api.MapPost("/recoveries/{id}/teardown", async (string id, CancellationToken requestAborted) => TypedResults.Ok(await service.WaitForTeardownAsync(id, requestAborted)));
    }
}
