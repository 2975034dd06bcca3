using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server;

/// <summary>
/// A hosted service that does one unit of work per tick of a <see cref="TimeProvider"/> timer (so
/// tests can drive the clock), logs a failed tick and tries again at the next one.
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
        using var timer = new PeriodicTimer(Interval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    Tick();
                }
                catch (Exception ex) when (ex is StorageException or IOException or ObjectDisposedException)
                {
                    _logger.LogWarning(ex, "{Work} failed; trying again in {Interval}", WorkName, Interval);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }
}
