using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server;

/// <summary>
/// A hosted service that does one unit of work per tick of a <see cref="TimeProvider"/> timer (so
/// tests can drive the clock), logs a failed tick and tries again at the next one. The ticking is
/// <see cref="PeriodicWorker"/>'s: one tick at a time, none after the host stops.
/// </summary>
public abstract class PeriodicService : BackgroundService
{
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    protected PeriodicService(TimeProvider time, ILogger logger)
    {
        _time = time;
        _logger = logger;
    }

    /// <summary>Time between ticks.</summary>
    protected abstract TimeSpan Interval { get; }

    /// <summary>What the log calls a failed tick, e.g. "Capacity check".</summary>
    protected abstract string WorkName { get; }

    protected abstract void Tick();

    protected sealed override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The shared periodic worker (its stop rule: a tick in progress finishes before this returns,
        // none starts after); this method only holds it for the service's lifetime.
        using var worker = new PeriodicWorker(Interval, RunTick, _time, ex => ServerLog.PeriodicWorkStopped(_logger, ex, WorkName));
        try
        {
            await Task.Delay(Timeout.Infinite, stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: disposing the worker waits for a tick in progress.
        }
    }

    private void RunTick()
    {
        try
        {
            Tick();
        }
        catch (Exception ex) when (ex is StorageException or IOException or ObjectDisposedException)
        {
            ServerLog.PeriodicWorkFailed(_logger, ex, WorkName, Interval);
        }
    }
}
