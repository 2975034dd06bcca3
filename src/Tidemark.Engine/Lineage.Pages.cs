using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

/// <summary>
/// The lineage's live map in memory: map pages loaded from the metadata store on demand, kept in a
/// clock ring, evicted when the pool's page budget is spent (dirty pages stay until their commit).
/// Every method here runs under the lineage's map lock (the <c>Locked</c> suffix) or takes it.
/// </summary>
internal sealed partial class Lineage
{
    public MapEntry GetLive(long block)
    {
        lock (_mapLock)
        {
            return GetLiveLocked(block);
        }
    }

    /// <summary>Map pages looked up in the metadata store because they were not cached (for tests).</summary>
    internal long StorePageLookups { get; private set; }

    private MapEntry GetLiveLocked(long block)
    {
        var page = GetPageLocked((ulong)block >> MapPage.PageShift, create: false);
        return page is null ? MapEntry.Absent : page[(int)(block & (MapPage.BlocksPerPage - 1))];
    }

    private void SetLiveLocked(long block, MapEntry entry)
    {
        var page = GetPageLocked((ulong)block >> MapPage.PageShift, create: true)!;
        var index = (int)(block & (MapPage.BlocksPerPage - 1));
        AccountLocked(block, page[index], entry);
        page[index] = entry;
        MarkDirtyLocked(page);
    }

    private void MarkDirtyLocked(MapPage page)
    {
        page.Dirty = true;
        _dirtyPages.Add(page);
    }

    private MapPage? GetPageLocked(ulong pageNo, bool create)
    {
        if (_pages.TryGet(pageNo, out var page))
        {
            page.Referenced = true;
            return page;
        }

        // A miss reads the stored page into a buffer this lineage reuses (under the map lock), so
        // a miss allocates only the page it caches.
        Span<byte> key = stackalloc byte[13];
        Keys.WriteKey3(key, Keys.LivePage, Id, pageNo);
        _pageBuffer ??= new byte[MapPage.Bytes];
        var found = _pool.Meta.TryGetFixed(key, _pageBuffer);
        StorePageLookups++;
        if (!found && !create)
        {
            return null;
        }

        page = _pool.Pages.Rent(pageNo);
        if (found)
        {
            page.Load(_pageBuffer);
        }

        if (_pool.PageCacheAdd(1))
        {
            EvictLocked();
        }

        _pages.Set(pageNo, page);
        _clock.Add(page);
        return page;
    }

    // Clock eviction over this lineage's pages: a page is dropped when it was not referenced since
    // the hand last passed it, is clean, and its last collected content is durable (else a reload
    // would read an older version from the store). The hand keeps its place between sweeps, so each
    // sweep costs what it evicts, not the size of the cache.
    private void EvictLocked()
    {
        var target = Math.Max(16, _clock.Count / 16);
        var evicted = 0;
        var durable = _pool.DurableCommitSeq;
        for (var looked = 0; evicted < target && looked < 2 * _clock.Count && _clock.Count > 0; looked++)
        {
            if (_hand >= _clock.Count)
            {
                _hand = 0;
            }

            var page = _clock[_hand];
            if (page.Referenced)
            {
                page.Referenced = false;
                _hand++;
                continue;
            }

            if (page.Dirty || page.CollectedSeq > durable)
            {
                _hand++;
                continue;
            }

            _pages.Remove(page.Number);
            _clock[_hand] = _clock[^1];
            _clock.RemoveAt(_clock.Count - 1);
            _pool.Pages.Retire(page);
            evicted++;
        }

        _pool.PageCacheAdd(-evicted);
    }

    /// <summary>Drops every cached page (after the lineage is deleted).</summary>
    public void DropCache()
    {
        lock (_mapLock)
        {
            _pool.PageCacheAdd(-_pages.Count);
            _pages.Clear();
            _clock.Clear();
            _dirtyPages.Clear();
        }
    }
}
