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
/// <para>
/// Stopping: after <see cref="Stop"/> nothing new is taken (<see cref="Enqueue"/> is false), the items
/// already queued still run (so whatever they hold, a pooled block or a reply, is given back by their
/// own code), then the thread ends. Called on the worker's own thread (an item that decides the work
/// is over) it does not wait for itself: the worker ends once the queue is empty. An item that throws
/// (or whose asynchronous completion faults) stops the worker the same way: the first exception is
/// kept in <see cref="Fault"/>, the items behind it still run, nothing new is taken, and the process
/// goes on. Callers that must stop without running what is queued (a simulated crash) make their
/// items check a flag of their own: one stop rule here, not two.
/// </para>
/// <para>
/// A dedicated thread rather than the thread pool: the items block (device writes, socket sends),
/// and on a 2-core machine a pool hop per item costs more than the work (DESIGN.md, data-path
/// performance). Items may be asynchronous (a flush through TLS): one that does not complete at once
/// parks the worker as an empty queue does, and its completion wakes it; the next item starts only
/// then, so order holds, and the worker never blocks inside the asynchronous operation (nothing its
/// completion needs is held by the worker). Thread-safe; <c>run</c> and <c>drained</c> run on the
/// worker's thread only.
/// </para>
/// </remarks>
public sealed class SerialWorker<T>
{
    private readonly object _gate = new();
    private readonly Queue<T> _queue = new();
    private readonly string _name;
    private readonly Func<T, ValueTask> _run;
    private readonly Func<ValueTask>? _drained;
    private readonly Action _resume;
    private Thread? _thread;
    private bool _running;
    private bool _stopping;
    private bool _waiting;
    private bool _drainedWanted;
    private bool _parked;
    private Exception? _fault;

    /// <param name="name">The thread's name in debuggers and dumps.</param>
    /// <param name="run">Runs one item.</param>
    /// <param name="drained">Runs when the queue became empty after <see cref="CallDrainedOrIdle"/>; may be null.</param>
    public SerialWorker(string name, Action<T> run, Action? drained = null)
        : this(name, item =>
        {
            run(item);
            return ValueTask.CompletedTask;
        }, drained is null ? null : () =>
        {
            drained();
            return ValueTask.CompletedTask;
        })
    {
    }

    /// <param name="name">The thread's name in debuggers and dumps.</param>
    /// <param name="run">Runs one item; the next starts once it completed.</param>
    /// <param name="drained">Runs when the queue became empty after <see cref="CallDrainedOrIdle"/>; may be null.</param>
    public SerialWorker(string name, Func<T, ValueTask> run, Func<ValueTask>? drained = null)
    {
        _name = name;
        _run = run;
        _drained = drained;
        _resume = Resume;
    }

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

    /// <summary>The first exception an item (or <c>drained</c>) threw; the worker stopped taking items then.</summary>
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
                _thread = new Thread(Loop) { IsBackground = true, Name = _name };
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
                if (_drained is not null)
                {
                    try
                    {
                        Complete(_drained());
                    }
                    catch (Exception ex)
                    {
                        Faulted(ex);
                    }
                }

                continue;
            }

            try
            {
                Complete(_run(item));
            }
            catch (Exception ex)
            {
                Faulted(ex);
            }

            lock (_gate)
            {
                // A producer waiting for room (WaitFor) looks again.
                Monitor.PulseAll(_gate);
            }
        }
    }

    /// <summary>
    /// An item threw: the worker stops taking items (see the class remarks) instead of the exception
    /// ending the process, so a bug in one connection's item cannot take the server down.
    /// </summary>
    private void Faulted(Exception ex)
    {
        lock (_gate)
        {
            _fault ??= ex;
            _stopping = true;
        }
    }

    /// <summary>
    /// Lets an item finish: at once when it completed synchronously (every item on a plain
    /// connection), else the worker parks until the item's completion wakes it (see remarks).
    /// </summary>
    private void Complete(ValueTask item)
    {
        var awaiter = item.ConfigureAwait(false).GetAwaiter();
        if (!awaiter.IsCompleted)
        {
            lock (_gate)
            {
                _parked = true;
            }

            awaiter.UnsafeOnCompleted(_resume);
            lock (_gate)
            {
                while (_parked)
                {
                    Monitor.Wait(_gate);
                }
            }
        }

        awaiter.GetResult();
    }

    /// <summary>An item's completion: the parked worker goes on.</summary>
    private void Resume()
    {
        lock (_gate)
        {
            _parked = false;
            Monitor.PulseAll(_gate);
        }
    }
}
