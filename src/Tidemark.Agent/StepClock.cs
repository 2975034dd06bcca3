using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Tidemark.Agent;

/// <summary>
/// Times the steps of a mail hold or release and logs each at debug level (event 9026), so that a
/// pause can be taken apart step by step (bench/agent/mail-pause.sh sums them per step).
/// </summary>
internal sealed class StepClock(ILogger logger, string phase, string where)
{
    private long _last = Stopwatch.GetTimestamp();

    /// <summary>Logs the time since the previous lap (or since the clock was made) as <paramref name="step"/>.</summary>
    public void Lap(string step)
    {
        var now = Stopwatch.GetTimestamp();
        AgentLog.MailStep(logger, phase, where, step, Stopwatch.GetElapsedTime(_last, now).TotalMilliseconds);
        _last = now;
    }

    /// <summary>Logs that a delivery agent waited for finished its delivery, with the time since the previous lap.</summary>
    public void Finished(string command, int pid) =>
        AgentLog.MailDeliveryFinished(logger, phase, where, command, pid, Stopwatch.GetElapsedTime(_last).TotalMilliseconds);
}
