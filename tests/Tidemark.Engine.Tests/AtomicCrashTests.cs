using System.Buffers.Binary;
using Tidemark.Engine;
using Tidemark.Engine.CrashWorker;

namespace Tidemark.Engine.Tests;

/// <summary>
/// kill -9 during a stream of overlapping atomic writes (ADR 0018): one writer and commits that each
/// carry whole map switches mean the reopened image is exactly the image after some prefix of the
/// writes, no shorter than the last completed flush. A write torn by the crash (some blocks new, some
/// old) matches no prefix. Plain writes fail this: blocks overwritten in place after the last commit
/// keep their new data while the redirected blocks of the same write revert.
/// </summary>
public class AtomicCrashTests
{
    private static int Rounds => Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? 30 : 3;

    [Fact]
    public void KillDuringAtomicWrites_ReopenedImageIsAPrefixOfTheWrites()
    {
        var rng = new Random(20261206);
        for (var round = 0; round < Rounds; round++)
        {
            var seed = rng.Next();
            var dir = Path.Combine(Path.GetTempPath(), "tidemark-atomic-crash-" + Guid.NewGuid().ToString("N")[..10]);
            var logPath = dir + ".log";
            try
            {
                CrashTests.RunAndKill(dir, logPath, seed, TimeSpan.FromMilliseconds(300 + rng.Next(1500)), mode: AtomicCrashWorkload.Mode);
                Check(dir, logPath, seed);
            }
            finally
            {
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }

                File.Delete(logPath);
            }
        }
    }

    private static void Check(string dir, string logPath, int seed)
    {
        var durable = File.ReadAllLines(logPath)
            .Where(l => l.StartsWith("durable ", StringComparison.Ordinal))
            .Select(l => int.Parse(l[8..], System.Globalization.CultureInfo.InvariantCulture))
            .DefaultIfEmpty(0).Max();

        using var pool = Pool.Open(dir);
        var report = pool.Verify();
        Assert.True(report.IsClean, string.Join("\n", report.Problems));

        // What each block holds: the stamp of the write that wrote it (0: never written), after
        // checking the whole block is that write's data for that block.
        const int Blocks = (int)(AtomicCrashWorkload.VolumeBytes / AtomicCrashWorkload.BlockBytes);
        var image = new byte[AtomicCrashWorkload.VolumeBytes];
        pool.GetVolume(AtomicCrashWorkload.VolumeName).Read(0, image);
        var stamps = new long[Blocks];
        var expectedBlock = new byte[AtomicCrashWorkload.BlockBytes];
        for (var b = 0; b < Blocks; b++)
        {
            var block = image.AsSpan(b * AtomicCrashWorkload.BlockBytes, AtomicCrashWorkload.BlockBytes);
            stamps[b] = BinaryPrimitives.ReadInt64LittleEndian(block);
            if (stamps[b] == 0)
            {
                Assert.True(block.IndexOfAnyExcept((byte)0) < 0, $"block {b} holds data no write wrote (seed {seed})");
                continue;
            }

            var index = (int)(stamps[b] - 1);
            var step = AtomicCrashWorkload.Get(seed, index);
            var k = b - step.FirstBlock;
            Assert.True(k >= 0 && k < step.Blocks, $"block {b} holds write {index}, which does not cover it (seed {seed})");
            AtomicCrashWorkload.FillBlock(expectedBlock, index, (int)k);
            Assert.True(block.SequenceEqual(expectedBlock), $"block {b} holds a torn block of write {index} (seed {seed})");
        }

        // The image after writes [0, p) for p = durable, durable + 1, ...: one of them must match.
        var prefix = new long[Blocks];
        for (var i = 0; i < durable; i++)
        {
            Apply(seed, i, prefix);
        }

        var issuedUpTo = durable + (2 * AtomicCrashWorkload.FlushEvery);
        for (var p = durable; ; p++)
        {
            if (prefix.AsSpan().SequenceEqual(stamps))
            {
                return;
            }

            Assert.True(p < issuedUpTo, $"after a crash at durable={durable} the image is not the image of any prefix of the writes: some write is torn or a durable write is lost (seed {seed}; {Describe(seed, durable, stamps)})");
            Apply(seed, p, prefix);
        }
    }

    private static void Apply(int seed, int index, long[] stamps)
    {
        var step = AtomicCrashWorkload.Get(seed, index);
        stamps.AsSpan((int)step.FirstBlock, step.Blocks).Fill(index + 1L);
    }

    // For each write since the durable point: how many of its blocks show it.
    private static string Describe(int seed, int durable, long[] stamps)
    {
        var parts = new List<string>();
        for (var i = Math.Max(0, durable - 2); i < durable + (2 * AtomicCrashWorkload.FlushEvery); i++)
        {
            var step = AtomicCrashWorkload.Get(seed, i);
            var shown = stamps.AsSpan((int)step.FirstBlock, step.Blocks).Count(i + 1L);
            parts.Add($"{i}:{shown}/{step.Blocks}");
        }

        return string.Join(' ', parts);
    }
}
