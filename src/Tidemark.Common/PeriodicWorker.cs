namespace Tidemark;

/// <summary>
/// Runs <c>run</c> once per period of a <see cref="TimeProvider"/> timer (so tests can drive the
/// clock), never two at once: the periodic sibling of <see cref="SerialWorker{T}"/>, with the same
/// stop rule (issue 18, "Also": one stop-a-worker pattern instead of a Task loop and a Timer each).
/// </summary>
/// <remarks>
/// <para>
/// Stopping: after <see cref="Stop"/> no new run starts; a run in progress finishes, and
/// <see cref="Stop"/> waits for it (called from inside a run it does not wait for itself). Stop and
/// <see cref="Dispose"/> are idempotent. A run that throws stops the worker the same way: the first
/// exception is kept in <see cref="Fault"/>, <c>faulted</c> is told once, and no run starts after
/// it; the process goes on. Work whose failures are expected (a store briefly unavailable) catches
/// them itself and is simply run again at the next tick.
/// </para>
/// <para>
/// A tick that comes while a run is still going is skipped, not queued: periodic work catches up
/// by doing its job once, not once per missed tick. Runs happen on the timer's thread (a pool thread
/// with the system clock, the caller of <c>Advance</c> with a fake one).
/// </para>
/// </remarks>
public sealed class PeriodicWorker : IDisposable
{
    private readonly object _gate = new();
    private readonly Action _run;
    private readonly Action<Exception>? _faulted;
    private readonly ITimer _timer;
    private Thread? _runner;
    private bool _stopping;
    private Exception? _fault;

    /// <param name="period">Time between runs; the first run comes one period after construction.</param>
    /// <param name="run">One unit of the work.</param>
    /// <param name="time">The clock; the system's when null.</param>
    /// <param name="faulted">Told once, on the run's thread, when a run threw and the worker stopped; may be null.</param>
    public PeriodicWorker(TimeSpan period, Action run, TimeProvider? time = null, Action<Exception>? faulted = null)
    {
        _run = run;
        _faulted = faulted;
        Period = period;
        _timer = (time ?? TimeProvider.System).CreateTimer(static state => ((PeriodicWorker)state!).Tick(), this, period, period);
    }

    public TimeSpan Period { get; }

    /// <summary>The exception a run threw; the worker stopped then.</summary>
    public Exception? Fault
    {
        get
        {
            lock (_gate)
            {
                return _fault;
            }
        }
    }

    /// <summary>True once stopped, by <see cref="Stop"/> or a fault.</summary>
    public bool IsStopped
    {
        get
        {
            lock (_gate)
            {
                return _stopping;
            }
        }
    }

    /// <summary>No run starts after this; waits for a run in progress unless called from it. Idempotent.</summary>
    public void Stop()
    {
        lock (_gate)
        {
            _stopping = true;
            while (_runner is not null && _runner != Thread.CurrentThread)
            {
                Monitor.Wait(_gate);
            }
        }

        _timer.Dispose();
    }

    public void Dispose() => Stop();

    private void Tick()
    {
        lock (_gate)
        {
            if (_stopping || _runner is not null)
            {
                return;
            }

            _runner = Thread.CurrentThread;
        }

        Exception? fault = null;
        try
        {
            _run();
        }
        catch (Exception ex)
        {
            fault = ex;
        }

        bool first;
        lock (_gate)
        {
            _runner = null;
            first = fault is not null && _fault is null;
            if (fault is not null)
            {
                _fault ??= fault;
                _stopping = true;
            }

            Monitor.PulseAll(_gate);
        }

        if (first)
        {
            _faulted?.Invoke(fault!);
        }
    }
}
