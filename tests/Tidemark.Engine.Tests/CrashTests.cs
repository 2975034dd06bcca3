using System.Diagnostics;
using Tidemark.Engine;
using Tidemark.Engine.CrashWorker;

namespace Tidemark.Engine.Tests;

/// <summary>
/// kill -9 at random moments: a child process runs the crash workload on a pool and is killed; the
/// pool must then open, verify clean, hold every write made durable by a completed flush (a write
/// not yet flushed may or may not be there, block by block), and every acknowledged snapshot with
/// exactly the data it was taken with.
/// </summary>
public class CrashTests
{
    private static int Rounds => Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? 40 : 4;

    [Fact]
    public void KillDuringLoad_ReopenHasEveryDurableWriteAndSnapshot()
    {
        var rng = new Random(1124);
        for (var round = 0; round < Rounds; round++)
        {
            var seed = rng.Next();
            var dir = Path.Combine(Path.GetTempPath(), "tidemark-crash-" + Guid.NewGuid().ToString("N")[..10]);
            var logPath = dir + ".log";
            try
            {
                RunAndKill(dir, logPath, seed, TimeSpan.FromMilliseconds(300 + rng.Next(1500)));
                CheckAfterCrash(dir, logPath, seed);
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

    internal static void RunAndKill(string dir, string logPath, int seed, TimeSpan runFor, string? store = null, string? mode = null)
    {
        var worker = Path.Combine(AppContext.BaseDirectory, "Tidemark.Engine.CrashWorker.dll");
        string[] arguments = [worker, .. mode is null ? Array.Empty<string>() : [mode], dir, logPath, seed.ToString(System.Globalization.CultureInfo.InvariantCulture), .. store is null ? Array.Empty<string>() : [store]];
        var start = new ProcessStartInfo("dotnet", arguments)
        {
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start the crash worker");
        try
        {
            // Wait until the worker runs its workload, then let it work for a random time.
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!(File.Exists(logPath) && File.ReadAllText(logPath).Contains("started", StringComparison.Ordinal)))
            {
                if (process.HasExited)
                {
                    Assert.Fail("the crash worker exited early: " + process.StandardError.ReadToEnd());
                }

                Assert.True(DateTime.UtcNow < deadline, "the crash worker did not start within 30 s");
                Thread.Sleep(20);
            }

            Thread.Sleep(runFor);
            if (process.HasExited)
            {
                Assert.Fail("the crash worker stopped by itself: " + process.StandardError.ReadToEnd());
            }
        }
        finally
        {
            process.Kill(entireProcessTree: true); // SIGKILL: no cleanup, no flush
            process.WaitForExit();
        }
    }

    // Which operations wrote this block, and which one (if any) wrote what the block holds.
    private static string Explain(int seed, long block, byte[] got, int durable)
    {
        var writers = new List<string>();
        for (var i = 0; i < durable + (2 * CrashWorkload.FlushEvery); i++)
        {
            var step = CrashWorkload.Get(seed, i);
            var first = step.Offset / CrashWorkload.BlockBytes;
            if (block < first || block >= first + (step.Length / CrashWorkload.BlockBytes))
            {
                continue;
            }

            var data = step.Unmap ? new byte[step.Length] : CrashWorkload.Data(step);
            var matches = got.AsSpan().SequenceEqual(data.AsSpan((int)((block - first) * CrashWorkload.BlockBytes), CrashWorkload.BlockBytes));
            writers.Add($"{i}{(step.Unmap ? "u" : "w")}{(matches ? "=" : "")}");
        }

        return $"seed {seed}, ops on the block: {string.Join(' ', writers.TakeLast(12))}; zero={got.All(b => b == 0)}";
    }

    internal static void CheckAfterCrash(string dir, string logPath, int seed)
    {
        var lines = File.ReadAllLines(logPath);
        var durable = lines.Where(l => l.StartsWith("durable ", StringComparison.Ordinal)).Select(l => int.Parse(l[8..], System.Globalization.CultureInfo.InvariantCulture)).DefaultIfEmpty(0).Max();
        var acknowledged = new Dictionary<string, int>();
        var mayBeGone = new HashSet<string>();
        foreach (var parts in lines.Select(l => l.Split(' ')))
        {
            switch (parts[0])
            {
                case "snapshot":
                    acknowledged[parts[1]] = int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture);
                    break;
                case "deleting":
                    mayBeGone.Add(parts[1]);
                    break;
                case "deleted":
                    acknowledged.Remove(parts[1]);
                    break;
            }
        }

        using var pool = Pool.Open(dir);
        Check(pool, seed, durable, durable + (2 * CrashWorkload.FlushEvery), acknowledged, mayBeGone);
    }

    /// <summary>
    /// Checks a reopened pool: verify clean; every operation before <paramref name="durable"/> is there;
    /// a block may instead hold what a later operation (up to <paramref name="issuedUpTo"/>) wrote; every
    /// acknowledged snapshot holds exactly the operations before it.
    /// </summary>
    internal static void Check(Pool pool, int seed, int durable, int issuedUpTo, Dictionary<string, int> acknowledged, HashSet<string> mayBeGone)
    {
        var report = pool.Verify();
        Assert.True(report.IsClean, string.Join("\n", report.Problems));

        // The live image: the durable prefix, then for each block any later (possibly lost) operation.
        var image = new byte[CrashWorkload.VolumeBytes];
        for (var i = 0; i < durable; i++)
        {
            CrashWorkload.Apply(CrashWorkload.Get(seed, i), image);
        }

        var alternatives = new Dictionary<long, List<byte[]>>();
        for (var i = durable; i < issuedUpTo; i++)
        {
            var step = CrashWorkload.Get(seed, i);
            var data = step.Unmap ? new byte[step.Length] : CrashWorkload.Data(step);
            for (var off = 0; off < step.Length; off += CrashWorkload.BlockBytes)
            {
                var block = (step.Offset + off) / CrashWorkload.BlockBytes;
                if (!alternatives.TryGetValue(block, out var list))
                {
                    alternatives[block] = list = [];
                }

                list.Add(data.AsSpan(off, CrashWorkload.BlockBytes).ToArray());
            }
        }

        var volume = pool.GetVolume("crash");
        var actual = new byte[CrashWorkload.VolumeBytes];
        volume.Read(0, actual);
        for (long block = 0; block < CrashWorkload.VolumeBytes / CrashWorkload.BlockBytes; block++)
        {
            var got = actual.AsSpan((int)(block * CrashWorkload.BlockBytes), CrashWorkload.BlockBytes).ToArray();
            if (got.AsSpan().SequenceEqual(image.AsSpan((int)(block * CrashWorkload.BlockBytes), CrashWorkload.BlockBytes)))
            {
                continue;
            }

            Assert.True(
                alternatives.TryGetValue(block, out var options) && options.Any(o => got.AsSpan().SequenceEqual(o)),
                $"block {block} after a crash at durable={durable} holds data that no durable or later write wrote ({Explain(seed, block, got, durable)})");
        }

        // Every acknowledged snapshot, exactly as it was taken.
        var names = pool.ListSnapshots("crash").Select(s => s.Name).ToHashSet();
        foreach (var (name, upTo) in acknowledged.OrderBy(kv => kv.Value))
        {
            if (!names.Contains(name))
            {
                Assert.Contains(name, mayBeGone);
                continue;
            }

            var expected = new byte[CrashWorkload.VolumeBytes];
            for (var i = 0; i < upTo; i++)
            {
                CrashWorkload.Apply(CrashWorkload.Get(seed, i), expected);
            }

            var snap = new byte[CrashWorkload.VolumeBytes];
            pool.OpenSnapshot($"crash@{name}").Read(0, snap);
            Assert.True(snap.AsSpan().SequenceEqual(expected), $"snapshot {name} does not hold the data it was taken with");
        }
    }
}
