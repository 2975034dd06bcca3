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
        var store = Phys.Store(runs[0].Phys);
        foreach (var run in runs)
        {
            if (Phys.Store(run.Phys) != store)
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
        }

        var reads = ArrayPool<StoreRead>.Shared.Rent(runs.Length);
        try
        {
            for (var i = 0; i < runs.Length; i++)
            {
                reads[i] = new StoreRead(Phys.Block(runs[i].Phys) << Lineage.BlockShift, runs[i].At, runs[i].Length);
            }

            return _stores[store].ReadScatteredAsync(reads.AsSpan(0, runs.Length), destination);
        }
        finally
        {
            ArrayPool<StoreRead>.Shared.Return(reads);
        }
    }
}
