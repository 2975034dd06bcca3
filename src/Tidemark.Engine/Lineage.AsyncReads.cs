using System.Buffers;
using Tidemark.Engine.Map;

namespace Tidemark.Engine;

/// <summary>
/// The asynchronous read of resolved blocks (ADR 0021): the same runs as the synchronous read, started
/// on the stores without waiting for them. Resolving stays with the caller, which holds the gate and
/// the grace period until the task ended and checks the atomic-switch sequence around the resolution.
/// </summary>
internal sealed partial class Lineage
{
    /// <summary>
    /// Reads the blocks <paramref name="entries"/> resolved to into <paramref name="destination"/>
    /// (one block per entry): unmapped blocks are zeroed here, the runs are started on their stores.
    /// <paramref name="entries"/> is used only during the call.
    /// </summary>
    public ValueTask ReadResolvedAsync(ReadOnlySpan<MapEntry> entries, Memory<byte> destination)
    {
        if (entries.Length == 1)
        {
            if (entries[0].IsMapped)
            {
                return _pool.ReadPhysAsync(entries[0].Phys, destination);
            }

            destination.Span.Clear();
            return default;
        }

        var runs = ArrayPool<(ulong Phys, int At, int Length)>.Shared.Rent(entries.Length);
        try
        {
            var count = CoalesceRuns(entries, destination.Span, runs);
            return count switch
            {
                0 => default,
                1 => _pool.ReadPhysAsync(runs[0].Phys, destination.Slice(runs[0].At, runs[0].Length)),
                _ => _pool.ReadPhysRunsAsync(runs.AsSpan(0, count), destination),
            };
        }
        finally
        {
            ArrayPool<(ulong Phys, int At, int Length)>.Shared.Return(runs);
        }
    }
}
