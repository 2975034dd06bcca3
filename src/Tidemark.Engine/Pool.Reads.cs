using System.Buffers;
using Tidemark.Engine.Map;
using Tidemark.Engine.Storage;

namespace Tidemark.Engine;

/// <summary>The asynchronous side of the pool's physical reads (ADR 0021).</summary>
public sealed partial class Pool
{
    internal ValueTask ReadPhysAsync(ulong phys, Memory<byte> destination) =>
        _stores[Phys.Store(phys)].ReadAsync(Phys.Block(phys) << Lineage.BlockShift, destination);

    /// <summary>
    /// <see cref="ReadPhysRuns"/> without waiting: runs in one store go to it as one scattered read;
    /// runs over several stores (a pool that grew onto another store) are read synchronously, as before.
    /// </summary>
    internal ValueTask ReadPhysRunsAsync(ReadOnlySpan<(ulong Phys, int At, int Length)> runs, Memory<byte> destination)
    {
        var store = OneStore(runs);
        if (store < 0)
        {
            try
            {
                ReadPhysRuns(runs, destination.Span);
                return default;
            }
            catch (Exception ex)
            {
                return ValueTask.FromException(ex);
            }
        }

        var reads = RentStoreReads(runs);
        try
        {
            return _stores[store].ReadScatteredAsync(reads.AsSpan(0, runs.Length), destination);
        }
        finally
        {
            ArrayPool<StoreRead>.Shared.Return(reads);
        }
    }

    /// <summary>The store every run lies in, or -1 when they lie in several.</summary>
    private static int OneStore(ReadOnlySpan<(ulong Phys, int At, int Length)> runs)
    {
        var store = Phys.Store(runs[0].Phys);
        foreach (var run in runs)
        {
            if (Phys.Store(run.Phys) != store)
            {
                return -1;
            }
        }

        return store;
    }

    /// <summary>The runs as reads of their store, in an array from the shared pool (the caller returns it).</summary>
    private static StoreRead[] RentStoreReads(ReadOnlySpan<(ulong Phys, int At, int Length)> runs)
    {
        var reads = ArrayPool<StoreRead>.Shared.Rent(runs.Length);
        for (var i = 0; i < runs.Length; i++)
        {
            reads[i] = new StoreRead(Phys.Block(runs[i].Phys) << Lineage.BlockShift, runs[i].At, runs[i].Length);
        }

        return reads;
    }
}
