using System.Buffers;
using Tidemark.Engine.Map;

namespace Tidemark.Engine;

/// <summary>Byte-addressed I/O over a lineage's whole blocks, shared by volumes and snapshot devices.</summary>
internal static class BlockIo
{
    // Bounds the work of one allocation-status call; callers continue after the runs returned.
    private const int MaxStatusBlocks = 64 * 1024;

    public static void Check(IBlockDevice device, long offsetBytes, long lengthBytes, bool write)
    {
        if (write && device.IsReadOnly)
        {
            throw new StorageException(StorageError.ReadOnly, $"{device.Name} is a read-only snapshot; create a view of it to write");
        }

        var lbs = device.LogicalBlockSizeBytes;
        if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes > device.SizeBytes || lengthBytes > device.SizeBytes - offsetBytes)
        {
            throw new StorageException(StorageError.OutOfRange, $"I/O of {lengthBytes} bytes at {offsetBytes} is beyond the end of {device.Name} ({device.SizeBytes} bytes)");
        }

        if ((offsetBytes | lengthBytes) % lbs != 0)
        {
            throw new StorageException(StorageError.Misaligned, $"I/O of {lengthBytes} bytes at {offsetBytes} is not aligned to the {lbs}-byte blocks of {device.Name}");
        }
    }

    public static void Read(Lineage lineage, ulong epoch, long offsetBytes, Span<byte> destination)
    {
        var within = (int)(offsetBytes & (Lineage.BlockBytes - 1));
        var block = offsetBytes >> Lineage.BlockShift;
        var done = 0;

        // The staging block is only needed (and only cleared) when the range is not whole blocks.
        var partial = within != 0 || (destination.Length & (Lineage.BlockBytes - 1)) != 0;
        Span<byte> buffer = partial ? stackalloc byte[Lineage.BlockBytes] : [];
        if (within != 0 || destination.Length < Lineage.BlockBytes)
        {
            var n = Math.Min(Lineage.BlockBytes - within, destination.Length);
            lineage.ReadBlocks(block, buffer, epoch);
            buffer.Slice(within, n).CopyTo(destination);
            done = n;
            block++;
        }

        var whole = (destination.Length - done) & ~(Lineage.BlockBytes - 1);
        if (whole > 0)
        {
            lineage.ReadBlocks(block, destination.Slice(done, whole), epoch);
            done += whole;
            block += whole >> Lineage.BlockShift;
        }

        if (done < destination.Length)
        {
            lineage.ReadBlocks(block, buffer, epoch);
            buffer[..(destination.Length - done)].CopyTo(destination[done..]);
        }
    }

    /// <summary>True for a range of whole blocks, the asynchronous read's case (a part of a block merges through a staging block, synchronously).</summary>
    public static bool IsWholeBlocks(long offsetBytes, int lengthBytes) =>
        lengthBytes > 0 && ((offsetBytes | (long)lengthBytes) & (Lineage.BlockBytes - 1)) == 0;

    /// <summary>
    /// Resolves whole blocks as of <paramref name="epoch"/> and starts their store reads (ADR 0021).
    /// For the live image of a volume, <paramref name="volume"/> resolves them consistently with
    /// atomic writes; the caller holds the grace period (and a volume's gate) until the task ended.
    /// </summary>
    public static ValueTask StartReadBlocks(Lineage lineage, ulong epoch, long offsetBytes, Memory<byte> destination, Volume? volume)
    {
        var first = offsetBytes >> Lineage.BlockShift;
        var count = destination.Length >> Lineage.BlockShift;
        var entries = ArrayPool<MapEntry>.Shared.Rent(count);
        try
        {
            var resolved = entries.AsSpan(0, count);
            if (volume is null)
            {
                lineage.Resolve(first, count, epoch, resolved);
            }
            else
            {
                volume.ResolveLive(lineage, first, resolved);
            }

            return lineage.ReadResolvedAsync(resolved, destination);
        }
        finally
        {
            ArrayPool<MapEntry>.Shared.Return(entries);
        }
    }

    public static int AllocationStatus(Lineage lineage, ulong epoch, long offsetBytes, long lengthBytes, Span<AllocationRun> destination)
    {
        if (destination.IsEmpty || lengthBytes == 0)
        {
            return 0;
        }

        var end = offsetBytes + lengthBytes;
        var first = offsetBytes >> Lineage.BlockShift;
        var last = (end - 1) >> Lineage.BlockShift;
        var blocks = (int)Math.Min(last - first + 1, MaxStatusBlocks);
        var entries = ArrayPool<MapEntry>.Shared.Rent(blocks);
        try
        {
            lineage.Resolve(first, blocks, epoch, entries);
            var count = 0;
            for (var i = 0; i < blocks; i++)
            {
                var start = Math.Max(offsetBytes, (first + i) << Lineage.BlockShift);
                var stop = Math.Min(end, (first + i + 1) << Lineage.BlockShift);
                var state = entries[i].IsMapped ? AllocationState.Allocated : AllocationState.Hole;
                if (count > 0 && destination[count - 1].State == state)
                {
                    var prev = destination[count - 1];
                    destination[count - 1] = prev with { LengthBytes = stop - prev.OffsetBytes };
                }
                else if (count < destination.Length)
                {
                    destination[count++] = new AllocationRun(start, stop - start, state);
                }
                else
                {
                    break;
                }
            }

            return count;
        }
        finally
        {
            ArrayPool<MapEntry>.Shared.Return(entries);
        }
    }
}
