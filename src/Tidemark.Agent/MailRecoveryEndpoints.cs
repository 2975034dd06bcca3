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
public sealed class MailRecoveryService(AgentConfig config, string agentDirectory, ILogger logger)
{
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new(StringComparer.Ordinal);

    public string ExportRoot => Path.Combine(agentDirectory, "recovered");

    public async Task<MailRecoveryResultDto> RunAsync(AgentMailRecoveryRequest request, CancellationToken requestAborted)
    {
        if (string.IsNullOrEmpty(request.Id) || request.Id.Length > 64 || !request.Id.All(char.IsAsciiLetterOrDigit))
        {
            throw new StorageException(StorageError.InvalidArgument, "a recovery carries its job's id (letters and digits)");
        }

        // Cancelled by the server's cancel call, or when the server goes away mid-call; the
        // teardown of the mount runs to its end either way (MountedSnapshot).
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
        if (!_running.TryAdd(request.Id, cancel))
        {
            throw new StorageException(StorageError.AlreadyExists, $"recovery {request.Id} already runs on this host");
        }

        var log = new LogWriter(logger, request.Id);
        try
        {
            if (!OperatingSystem.IsLinux())
            {
                throw new StorageException(StorageError.Unsupported, "a mail recovery mounts a view with nbdfuse and a loop device: it needs a Linux host");
            }

            logger.LogInformation("Mail recovery {Id} from {Snapshot} starts", request.Id, request.Snapshot);
            var result = await MailRecoveryJob.RunAsync(request, config.HostName, agentDirectory, ExportRoot, log, cancel.Token);
            logger.LogInformation("Mail recovery {Id} from {Snapshot}: {Matches} matched, {Outcomes} delivered", request.Id, request.Snapshot, result.Matches.Count, result.Outcomes.Count);
            return result;
        }
        catch (RecoveryException ex)
        {
            logger.LogWarning("Mail recovery {Id} from {Snapshot} failed: {Message}", request.Id, request.Snapshot, ex.Message);
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
            _running.TryRemove(request.Id, out _);
        }
    }

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

            return true;
        }

        return false;
    }

    /// <summary>The recovery's step lines ("mounted in", "searched in") into the agent's log.</summary>
    private sealed class LogWriter(ILogger logger, string id) : StringWriter(CultureInfo.InvariantCulture)
    {
        public override void WriteLine(string? value) => logger.LogInformation("Mail recovery {Id}: {Line}", id, value);

        public override Task WriteLineAsync(string? value)
        {
            WriteLine(value);
            return Task.CompletedTask;
        }
    }
}

public static class MailRecoveryEndpoints
{
    /// <summary>POST recoveries/mail runs one; POST recoveries/ID/cancel stops it (the server's job cancel).</summary>
    public static void MapMailRecovery(this RouteGroupBuilder api, AgentConfig config, string agentDirectory, ILogger logger)
    {
        var service = new MailRecoveryService(config, agentDirectory, logger);
        api.MapPost("/recoveries/mail", async (AgentMailRecoveryRequest request, CancellationToken requestAborted) =>
            TypedResults.Ok(await service.RunAsync(request, requestAborted)));
        api.MapPost("/recoveries/{id}/cancel", (string id) => TypedResults.Ok(new { cancelled = service.Cancel(id) }));
    }
}
