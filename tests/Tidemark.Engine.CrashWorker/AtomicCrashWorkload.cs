using System.Buffers.Binary;

namespace Tidemark.Engine.CrashWorker;

/// <summary>
/// The atomic-write crash workload: a single writer issues atomic writes of 1 to 256 blocks that
/// overlap in a hot 8 MiB, each block stamped with its write's number, so after a kill -9 the image
/// shows which writes each block holds. Write i is derived from (seed, i) alone.
/// </summary>
public static class AtomicCrashWorkload
{
    public const string Mode = "atomic";
    public const string VolumeName = "atomic";
    public const long VolumeBytes = 16L << 20;
    public const int BlockBytes = 4096;
    public const int FlushEvery = 16;
    private const long HotBlocks = (8L << 20) / BlockBytes;

    public readonly record struct Step(long FirstBlock, int Blocks);

    public static Step Get(int seed, int index)
    {
        var rng = new Random(unchecked((seed * 1_000_003) + index));
        var blocks = 1 + rng.Next(256);
        return new Step(rng.NextInt64(HotBlocks - blocks + 1), blocks);
    }

    /// <summary>Block k of write i: the stamp i + 1 (zero is "never written"), k, and a fill from both.</summary>
    public static byte[] Data(int index, Step step)
    {
        var data = new byte[step.Blocks * BlockBytes];
        for (var k = 0; k < step.Blocks; k++)
        {
            FillBlock(data.AsSpan(k * BlockBytes, BlockBytes), index, k);
        }

        return data;
    }

    public static void FillBlock(Span<byte> block, int index, int k)
    {
        block.Fill((byte)(index * 31 + k));
        BinaryPrimitives.WriteInt64LittleEndian(block, index + 1L);
        BinaryPrimitives.WriteInt32LittleEndian(block[8..], k);
    }

    public static void Run(Pool pool, int seed, Action<string> log)
    {
        var volume = pool.TryGetVolume(VolumeName, out var existing) ? existing : pool.CreateVolume(VolumeName, VolumeBytes);
        log("started");
        for (var i = 0; ; i++)
        {
            var step = Get(seed, i);
            volume.WriteAtomic(step.FirstBlock * BlockBytes, Data(i, step), forceUnitAccess: false);
            if ((i + 1) % FlushEvery == 0)
            {
                volume.Flush();
                log($"durable {i + 1}");
            }
        }
    }
}
