namespace Tidemark.Engine.CrashWorker;

/// <summary>
/// The deterministic workload of the crash tests: operation i is derived from (seed, i) alone, so
/// the checking side can replay exactly what the killed side did.
/// </summary>
public static class CrashWorkload
{
    public const long VolumeBytes = 64L << 20;
    public const int BlockBytes = 4096;
    public const int FlushEvery = 16;
    public const int SnapshotEveryFlushes = 4;

    public readonly record struct Step(bool Unmap, long Offset, int Length, int DataSeed);

    public static Step Get(int seed, int index)
    {
        var rng = new Random(unchecked((seed * 1_000_003) + index)); // not HashCode: it is randomized per process
        var blocks = 1 + (rng.Next(4) == 0 ? rng.Next(64) : rng.Next(4));
        var first = rng.NextInt64(VolumeBytes / BlockBytes - blocks);
        // Writes stay in a hot quarter of the volume three times out of four, so they overwrite each other.
        if (rng.Next(4) != 0)
        {
            first %= VolumeBytes / BlockBytes / 4;
        }

        return new Step(rng.Next(10) == 0, first * BlockBytes, blocks * BlockBytes, rng.Next());
    }

    public static void Apply(Step step, byte[] image)
    {
        if (step.Unmap)
        {
            Array.Clear(image, (int)step.Offset, step.Length);
        }
        else
        {
            Data(step).CopyTo(image, step.Offset);
        }
    }

    public static byte[] Data(Step step)
    {
        var data = new byte[step.Length];
        new Random(step.DataSeed).NextBytes(data);
        return data;
    }
}
