namespace Tidemark.Engine.Map;

/// <summary>
/// Reuses evicted map pages instead of leaving them to the garbage collector: with a map larger than
/// the cache, every miss evicts a page, and fresh 4 KiB pages that live long enough to be promoted
/// and then die kept the GC's committed memory at several times the live heap. An evicted page may
/// still be read by a lock-free reader, so it is only reused after a grace period (the pool waits
/// one out after each commit anyway when it frees blocks, and also when pages were retired).
/// </summary>
internal sealed class PageRecycler : IDisposable
{
    /// <summary>Retired pages that wake the reclaimer (so a read-only load, which never commits, recycles too).</summary>
    public const int ReclaimBatch = 64;

    /// <summary>Ready pages kept beyond this are dropped (the cache is shrinking, or was resized).</summary>
    public const int MaxReady = 4096;

    private readonly Lock _lock = new();
    private readonly Stack<MapPage> _ready = new();
    private readonly GracePeriod _grace;
    private readonly SerialWorker<bool> _reclaimer;
    private List<MapPage> _retired = [];

    public PageRecycler(GracePeriod grace)
    {
        _grace = grace;

        // A dedicated thread (the shared stop-a-worker pattern): a reclaim blocks in WaitForReaders,
        // which must not hold a pool thread, and Dispose joins the thread instead of a task.
        _reclaimer = new SerialWorker<bool>("tidemark page reclaimer", _ => Reclaim());
    }

    public int ReadyCount
    {
        get
        {
            lock (_lock)
            {
                return _ready.Count;
            }
        }
    }

    /// <summary>An evicted page: not reusable until <see cref="TakeRetired"/> and <see cref="Release"/> bracket a grace period.</summary>
    public void Retire(MapPage page)
    {
        bool wake;
        lock (_lock)
        {
            // Without commits (a read-only load) nothing releases them: keep a bounded number, the rest is garbage.
            if (_retired.Count >= MaxReady)
            {
                return;
            }

            _retired.Add(page);
            wake = _retired.Count == ReclaimBatch;
        }

        if (wake)
        {
            // Outside the lock: the first one starts the worker's thread. False once disposed: the pages are garbage then.
            _reclaimer.Enqueue(true);
        }
    }

    /// <summary>A page for <paramref name="number"/>: a recycled one when available, else new.</summary>
    public MapPage Rent(ulong number)
    {
        lock (_lock)
        {
            if (_ready.TryPop(out var page))
            {
                page.Reuse(number);
                return page;
            }
        }

        return new MapPage(number) { Referenced = true };
    }

    /// <summary>The pages retired so far; the caller waits for readers and then calls <see cref="Release"/>.</summary>
    public List<MapPage>? TakeRetired()
    {
        lock (_lock)
        {
            if (_retired.Count == 0)
            {
                return null;
            }

            var taken = _retired;
            _retired = [];
            return taken;
        }
    }

    public void Release(List<MapPage> pages)
    {
        lock (_lock)
        {
            foreach (var page in pages)
            {
                if (_ready.Count >= MaxReady)
                {
                    break;
                }

                _ready.Push(page);
            }
        }
    }

    // Off every lock: waiting for readers while holding a map lock could wait for a reader that waits for that lock.
    private void Reclaim()
    {
        if (TakeRetired() is { } pages)
        {
            _grace.WaitForReaders();
            Release(pages);
        }
    }

    /// <summary>Stops the reclaimer: a reclaim running or queued finishes (the pool's readers are gone by now), then its thread is joined.</summary>
    public void Dispose() => _reclaimer.Stop();
}
