namespace Tidemark;

/// <summary>
/// A dedicated thread that runs queued items one at a time, in the order they were queued: the one
/// implementation of "hand work to a worker thread, then stop it" (issue 18, "Also"). The thread
/// starts with the first item and sleeps while the queue is empty. When asked
/// (<see cref="CallDrainedOrIdle"/>) it calls <c>drained</c> once its queue is empty, before it
/// sleeps (a connection's worker sends its batched replies there).
/// <see cref="Stop"/> lets it finish what is queued, then ends and joins it.
/// </summary>
/// <remarks>
/// A dedicated thread rather than the thread pool: the items block (device writes, socket sends),
/// and on a 2-core machine a pool hop per item costs more than the work (DESIGN.md, data-path
/// performance). Thread-safe; <paramref name="run"/> and <paramref name="drained"/> run on the
/// worker's thread only, and must not throw (an exception there ends the process, like any thread's).
/// </remarks>
/// <param name="name">The thread's name in debuggers and dumps.</param>
/// <param name="run">Runs one item.</param>
/// <param name="drained">Runs when the queue became empty after <see cref="CallDrainedOrIdle"/>; may be null.</param>
public sealed class SerialWorker<T>(string name, Action<T> run, Action? drained = null)
{
    private readonly object _gate = new();
    private readonly Queue<T> _queue = new();
    private Thread? _thread;
    private bool _running;
    private bool _stopping;
    private bool _waiting;
    private bool _drainedWanted;

    /// <summary>True while nothing is queued or running. Stable from the queuing thread's view: only it adds work.</summary>
    public bool IsIdle
    {
        get
        {
            lock (_gate)
            {
                return _queue.Count == 0 && !_running;
            }
        }
    }

    /// <summary>Items queued and not yet started.</summary>
    public int Queued
    {
        get
        {
            lock (_gate)
            {
                return _queue.Count;
            }
        }
    }

    /// <summary>Queues an item; false once <see cref="Stop"/> was called (the item was not taken).</summary>
    public bool Enqueue(T item)
    {
        lock (_gate)
        {
            if (_stopping)
            {
                return false;
            }

            _queue.Enqueue(item);
            if (_thread is null)
            {
                _thread = new Thread(Loop) { IsBackground = true, Name = name };
                _thread.Start();
            }
            else if (_waiting)
            {
                // Wake only a sleeping worker: a busy one finds the item when it looks next.
                Monitor.PulseAll(_gate);
            }
        }

        return true;
    }

    /// <summary>
    /// Asks for <c>drained</c> once the queue is empty; false when the worker is idle already (then
    /// it will not call it, and the caller does that work itself). Decided under the same lock as the
    /// worker's going idle, so exactly one of the two does the work.
    /// </summary>
    public bool CallDrainedOrIdle()
    {
        lock (_gate)
        {
            if (_queue.Count == 0 && !_running)
            {
                return false;
            }

            _drainedWanted = true;
            return true;
        }
    }

    /// <summary>Waits until everything queued so far has run (and <c>drained</c> with it).</summary>
    public void WaitIdle()
    {
        lock (_gate)
        {
            while (_queue.Count > 0 || _running)
            {
                Monitor.Wait(_gate);
            }
        }
    }

    /// <summary>
    /// Waits until <paramref name="condition"/> holds or the worker is idle; the condition is checked
    /// after each item the worker ran (a producer waits for room this way).
    /// </summary>
    public void WaitFor(Func<bool> condition)
    {
        lock (_gate)
        {
            while (!condition() && (_queue.Count > 0 || _running))
            {
                Monitor.Wait(_gate);
            }
        }
    }

    /// <summary>Lets the worker run what is queued, then ends its thread and waits for it. Idempotent.</summary>
    public void Stop()
    {
        Thread? thread;
        lock (_gate)
        {
            _stopping = true;
            thread = _thread;
            Monitor.PulseAll(_gate);
        }

        if (thread is not null && thread != Thread.CurrentThread)
        {
            thread.Join();
        }
    }

    private void Loop()
    {
        while (true)
        {
            T item;
            bool drainedNow;
            lock (_gate)
            {
                // The worker goes idle only through this block, under the lock CallDrainedOrIdle takes:
                // a request for drained made while it was busy is always seen here.
                drainedNow = _queue.Count == 0 && _drainedWanted;
                if (drainedNow)
                {
                    _drainedWanted = false;
                    item = default!;
                }
                else
                {
                    if (_queue.Count == 0)
                    {
                        _running = false;

                        // Whoever waits for idle may go on now.
                        Monitor.PulseAll(_gate);
                        while (_queue.Count == 0 && !_stopping)
                        {
                            _waiting = true;
                            Monitor.Wait(_gate);
                            _waiting = false;
                        }

                        if (_queue.Count == 0)
                        {
                            return;
                        }
                    }

                    item = _queue.Dequeue();
                    _running = true;
                }
            }

            if (drainedNow)
            {
                // Still marked running, so a waiter for idle sees the drained work as done only after this.
                drained?.Invoke();
                continue;
            }

            run(item);
            lock (_gate)
            {
                // A producer waiting for room (WaitFor) looks again.
                Monitor.PulseAll(_gate);
            }
        }
    }
}
