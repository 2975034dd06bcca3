using Tidemark.Engine.Map;

namespace Tidemark.Engine;

/// <summary>
/// The atomic write (SBC-4 WRITE ATOMIC, docs/adr/0018-atomic-write.md): every block redirected to
/// fresh space, then one switch of the map under one hold of the map lock, counted by a sequence
/// that lock-free readers check. The write path itself is the lineage's <c>WriteBlocks</c>.
/// </summary>
internal sealed partial class Lineage
{
    private int _atomicSwitchSeq;

    /// <summary>
    /// Writes whole blocks all or nothing (ADR 0018): every block goes to freshly allocated space,
    /// even one this lineage alone references, and the map switches to the new blocks under one hold
    /// of the map lock, so a commit collects all of the switch or none of it, and a crash leaves the
    /// range wholly old or wholly new. <see cref="AtomicSwitchSeq"/> is odd while the switch runs, so
    /// lock-free readers can tell that they may have seen part of it. The caller holds the region locks.
    /// </summary>
    public void WriteBlocksAtomic(long firstBlock, ReadOnlySpan<byte> data) => WriteBlocks(firstBlock, new BlockSource(data), atomic: true);

    /// <summary>Bumped before and after each atomic map switch: odd while one runs (a sequence lock for readers).</summary>
    public int AtomicSwitchSeq => Volatile.Read(ref _atomicSwitchSeq);

    private void SwitchAtomicLocked(long firstBlock, int count, bool[] inPlace, ulong[] target)
    {
        // Load the range's map pages first: a metadata read that fails then fails the write before
        // any entry changed.
        for (var block = firstBlock; block < firstBlock + count; block = (block | (MapPage.BlocksPerPage - 1)) + 1)
        {
            GetPageLocked((ulong)block >> MapPage.PageShift, create: true);
        }

        Interlocked.Increment(ref _atomicSwitchSeq);
        try
        {
            SwitchLocked(firstBlock, count, inPlace, target);
        }
        catch (Exception ex)
        {
            // Only a page evicted by the loads above and failing to reload gets here, with part of the
            // switch made in memory: the pool goes offline so no commit ever makes it durable.
            _pool.TakeOffline(ex);
            throw;
        }
        finally
        {
            Interlocked.Increment(ref _atomicSwitchSeq);
        }
    }
}
