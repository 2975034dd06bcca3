using System.Diagnostics;
using System.Globalization;
using Microsoft.Win32.SafeHandles;
using Tidemark;
using Tidemark.Engine;

// Engine benchmarks, in-process, side by side with plain file I/O on the same disk in the same run.
// Usage: dotnet run -c Release --project bench/Tidemark.Bench.Engine -- [--dir DIR] [--seconds N]
//        [--size-gib N] [--only io|read|snap|diff|space|memory]
//        (read: only the 4K random read rows of io, e.g. to profile them) [--memory-gib N]
// Prints a Markdown table of figures and ratios (goals from issue #2; not asserted anywhere).
var arguments = Args.Parse(args);
var dir = Path.Combine(arguments.Get("dir", "/var/tmp"), "tidemark-bench-" + Environment.ProcessId);
Directory.CreateDirectory(dir);
var seconds = double.Parse(arguments.Get("seconds", "10"), CultureInfo.InvariantCulture);
var sizeBytes = long.Parse(arguments.Get("size-gib", "4"), CultureInfo.InvariantCulture) << 30;
var only = arguments.Get("only", "all");
var report = new List<string>();
void Row(string what, string figure, string peer = "", string ratio = "", string goal = "")
{
    var line = $"| {what} | {figure} | {peer} | {ratio} | {goal} |";
    report.Add(line);
    Console.WriteLine(line);
}

Console.WriteLine($"dir={dir} size={ByteSize.Format(sizeBytes)} seconds={seconds} cores={Environment.ProcessorCount}");
Console.WriteLine("| measure | Tidemark | plain file | ratio | goal |");
Console.WriteLine("|---|---|---|---|---|");
try
{
    if (only is "all" or "io" or "read")
    {
        Io.Run(dir, sizeBytes, seconds, Row, readsOnly: only == "read");
    }

    if (only is "all" or "snap")
    {
        Snapshots.Run(dir, Row);
    }

    if (only is "all" or "diff")
    {
        Diffs.Run(dir, Row);
    }

    if (only is "all" or "space")
    {
        Space.Run(dir, Row);
    }

    if (only is "memory")
    {
        Memory.Run(dir, long.Parse(arguments.Get("memory-gib", "20"), CultureInfo.InvariantCulture) << 30, long.Parse(arguments.Get("map-cache-mib", "32"), CultureInfo.InvariantCulture) << 20, Row);
    }
}
finally
{
    Directory.Delete(dir, recursive: true);
}

internal sealed class Args
{
    private readonly Dictionary<string, string> _values = [];

    public static Args Parse(string[] args)
    {
        var parsed = new Args();
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            parsed._values[args[i].TrimStart('-')] = args[i + 1];
        }

        return parsed;
    }

    public string Get(string name, string fallback) => _values.GetValueOrDefault(name, fallback);
}

/// <summary>Throughput of the data path against pread/pwrite on a plain file of the same size.</summary>
internal static class Io
{
    public static void Run(string dir, long size, double seconds, Action<string, string, string, string, string> row, bool readsOnly)
    {
        var plainPath = Path.Combine(dir, "plain.img");
        using var plain = File.OpenHandle(plainPath, FileMode.CreateNew, FileAccess.ReadWrite);
        Fill((off, data) => RandomAccess.Write(plain, data, off), size);

        var poolDir = Path.Combine(dir, "pool");
        using var pool = Pool.Create(poolDir, new PoolOptions { FirstStoreCapacityBytes = size * 3 });
        var volume = pool.CreateVolume("bench", size, 4096);
        Fill((off, data) => volume.Write(off, data, false), size);
        volume.Flush();

        foreach (var threads in new[] { 1, 2 })
        {
            var (engineRead, plainRead, ratio) = Alternate(seconds, threads, size, 4096, random: true, (off, buf) => volume.Read(off, buf), (off, buf) => RandomAccess.Read(plain, buf, off));
            row($"4K random read, {threads} thread(s)", Iops(engineRead), Iops(plainRead), ratio, ">= 0.8x");
        }

        if (readsOnly)
        {
            return;
        }

        foreach (var threads in new[] { 1 })
        {
            var (engineSeqRead, plainSeqRead, seqRatio) = Alternate(seconds, threads, size, 1 << 20, random: false, (off, buf) => volume.Read(off, buf), (off, buf) => RandomAccess.Read(plain, buf, off));
            row("1 MiB sequential read", MiBs(engineSeqRead, 1 << 20), MiBs(plainSeqRead, 1 << 20), seqRatio, ">= 0.8x");
            var plainSeqWrite = Measure(seconds, threads, size, 1 << 20, random: false, (off, buf) => RandomAccess.Write(plain, buf, off));
            var engineSeqWrite = Measure(seconds, threads, size, 1 << 20, random: false, (off, buf) => volume.Write(off, buf, false));
            row("1 MiB sequential write (overwrite)", MiBs(engineSeqWrite, 1 << 20), MiBs(plainSeqWrite, 1 << 20), Ratio(engineSeqWrite, plainSeqWrite), ">= 0.8x");
        }

        var plainWrite = Measure(seconds, 1, size, 4096, random: true, (off, buf) => RandomAccess.Write(plain, buf, off));
        var none = Measure(seconds, 1, size, 4096, random: true, (off, buf) => volume.Write(off, buf, false));
        row("4K random write, 0 snapshots", Iops(none), Iops(plainWrite), Ratio(none, plainWrite), "");
        var made = 0;
        foreach (var target in new[] { 256, 10_000 })
        {
            var rng = new Random(target);
            var block = new byte[4096];
            while (made < target)
            {
                // A few writes between snapshots, as a schedule would see.
                for (var i = 0; i < 4; i++)
                {
                    volume.Write(rng.NextInt64(size / 4096) * 4096, block, false);
                }

                pool.CreateSnapshot("bench", $"s{made++}");
            }

            var with = Measure(seconds, 1, size, 4096, random: true, (off, buf) => volume.Write(off, buf, false));
            row($"4K random write, {target} snapshots", Iops(with), Iops(none) + " (0 snapshots)", Ratio(with, none), ">= 0.9x of 0 snapshots");
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "sync")]
    private static extern void Sync();

    public static void Fill(Action<long, byte[]> write, long size)
    {
        var data = new byte[1 << 20];
        new Random(1).NextBytes(data);
        for (long off = 0; off < size; off += data.Length)
        {
            write(off, data);
        }
    }

    /// <summary>
    /// Measures <paramref name="op"/> against <paramref name="peer"/> in alternating one-second rounds
    /// (which goes first alternates too) for <paramref name="seconds"/> each, so that what the rest of
    /// this shared machine does meanwhile weighs on both alike. Returns both mean rates and the median
    /// of the per-round ratios (this VM's page-cache read rate drifts by 30% over a minute).
    /// </summary>
    public static (double Op, double Peer, string Ratio) Alternate(double seconds, int threads, long size, int ioSize, bool random, Action<long, byte[]> op, Action<long, byte[]> peer)
    {
        var rounds = Math.Max(2, (int)Math.Round(seconds));
        var ratios = new List<double>();
        double opTotal = 0, peerTotal = 0;
        for (var i = 0; i < rounds; i++)
        {
            double a, b;
            if (i % 2 == 0)
            {
                a = Measure(1, threads, size, ioSize, random, op);
                b = Measure(1, threads, size, ioSize, random, peer);
            }
            else
            {
                b = Measure(1, threads, size, ioSize, random, peer);
                a = Measure(1, threads, size, ioSize, random, op);
            }

            opTotal += a;
            peerTotal += b;
            ratios.Add(a / b);
        }

        ratios.Sort();
        var median = ratios.Count % 2 == 1 ? ratios[ratios.Count / 2] : (ratios[(ratios.Count / 2) - 1] + ratios[ratios.Count / 2]) / 2;
        var text = string.Create(CultureInfo.InvariantCulture, $"{median:0.00}x (median of {rounds} alternating 1 s rounds; {ratios[0]:0.00}-{ratios[^1]:0.00})");
        return (opTotal / rounds, peerTotal / rounds, text);
    }

    // Runs `op` on `threads` threads for `seconds`; returns operations per second. Starts from a
    // clean page cache state (no dirty pages of earlier phases being written back meanwhile).
    public static double Measure(double seconds, int threads, long size, int ioSize, bool random, Action<long, byte[]> op)
    {
        Sync();
        long total = 0;
        var stopAt = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            var rng = new Random(t + 17);
            var buffer = new byte[ioSize];
            rng.NextBytes(buffer);
            long n = 0;
            long seq = t * (size / threads) / ioSize;
            var units = size / ioSize;
            while ((n & 63) != 0 || Stopwatch.GetTimestamp() < stopAt)
            {
                var unit = random ? rng.NextInt64(units) : seq++ % units;
                op(unit * ioSize, buffer);
                n++;
            }

            Interlocked.Add(ref total, n);
        })).ToList();
        var started = Stopwatch.GetTimestamp();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        return total / Stopwatch.GetElapsedTime(started).TotalSeconds;
    }

    public static string Iops(double opsPerSecond) => opsPerSecond.ToString("N0", CultureInfo.InvariantCulture) + " IOPS";

    public static string MiBs(double opsPerSecond, int ioSize) => (opsPerSecond * ioSize / (1 << 20)).ToString("N0", CultureInfo.InvariantCulture) + " MiB/s";

    public static string Ratio(double a, double b) => (a / b).ToString("0.00", CultureInfo.InvariantCulture) + "x";
}

/// <summary>Snapshot creation latency on a 100 GiB volume with 10 GiB written.</summary>
internal static class Snapshots
{
    public static void Run(string dir, Action<string, string, string, string, string> row)
    {
        using var pool = Pool.Create(Path.Combine(dir, "snap"), new PoolOptions { FirstStoreCapacityBytes = 40L << 30 });
        var volume = pool.CreateVolume("big", 100L << 30, 4096);
        var data = new byte[1 << 20];
        new Random(2).NextBytes(data);
        var sw = Stopwatch.StartNew();
        for (long off = 0; off < 10L << 30; off += data.Length)
        {
            volume.Write(off * 10 % (100L << 30) / (1 << 20) * (1 << 20), data, false);
        }

        volume.Flush();
        Console.WriteLine($"wrote 10 GiB in {sw.Elapsed.TotalSeconds:0.0} s");
        var latencies = new List<double>();
        var rng = new Random(3);
        var block = new byte[4096];
        for (var i = 0; i < 300; i++)
        {
            for (var j = 0; j < 16; j++)
            {
                volume.Write(rng.NextInt64((100L << 30) / 4096) * 4096, block, false);
            }

            volume.Flush(); // the writes' own flush is not the snapshot's cost
            var t = Stopwatch.GetTimestamp();
            pool.CreateSnapshot("big", $"s{i}");
            latencies.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }

        latencies.Sort();
        row(
            "snapshot create, 100 GiB volume, 10 GiB written (300 snapshots)",
            $"p50 {latencies[latencies.Count / 2]:0.00} ms, p99 {latencies[(int)(latencies.Count * 0.99)]:0.00} ms, max {latencies[^1]:0.00} ms",
            "",
            "",
            "p99 <= 5 ms");
    }
}

/// <summary>Diff cost for the same number of changed blocks on a 1 GiB and a 100 GiB volume.</summary>
internal static class Diffs
{
    public static void Run(string dir, Action<string, string, string, string, string> row)
    {
        var times = new Dictionary<long, double>();
        foreach (var gib in new[] { 1L, 100L })
        {
            using var pool = Pool.Create(Path.Combine(dir, $"diff{gib}"), new PoolOptions { FirstStoreCapacityBytes = 8L << 30 });
            var size = gib << 30;
            var volume = pool.CreateVolume("v", size, 4096);
            var block = new byte[4096];
            var rng = new Random(4);
            for (var i = 0; i < 20_000; i++)
            {
                volume.Write(rng.NextInt64(size / 4096) * 4096, block, false);
            }

            pool.CreateSnapshot("v", "a");
            for (var i = 0; i < 10_000; i++)
            {
                volume.Write(rng.NextInt64(size / 4096) * 4096, block, false);
            }

            pool.CreateSnapshot("v", "b");
            pool.Diff("v", "a", "b"); // warm
            var sw = Stopwatch.StartNew();
            const int Runs = 5;
            var ranges = 0;
            for (var r = 0; r < Runs; r++)
            {
                ranges = pool.Diff("v", "a", "b").Count;
            }

            times[gib] = sw.Elapsed.TotalMilliseconds / Runs;
            row($"diff of 10,000 changed 4K blocks, {gib} GiB volume", $"{times[gib]:0.0} ms ({ranges} ranges)", "", "", "");
        }

        row("diff time 100 GiB / 1 GiB", Io.Ratio(times[100], times[1]), "", "", "<= 1.5x");
    }
}

/// <summary>Snapshot space per byte overwritten, random 4K and sequential.</summary>
internal static class Space
{
    public static void Run(string dir, Action<string, string, string, string, string> row)
    {
        foreach (var random in new[] { true, false })
        {
            using var pool = Pool.Create(Path.Combine(dir, random ? "space-r" : "space-s"), new PoolOptions { FirstStoreCapacityBytes = 4L << 30 });
            var size = 1L << 30;
            var volume = pool.CreateVolume("v", size, 4096);
            Io.Fill((off, data) => volume.Write(off, data, false), size);
            volume.Flush();
            var before = pool.GetInfo().UsedBytes;
            pool.CreateSnapshot("v", "s");
            var rng = new Random(5);
            const long Overwritten = 64L << 20;
            if (random)
            {
                var block = new byte[4096];
                var seen = new HashSet<long>();
                while (seen.Count * 4096L < Overwritten)
                {
                    var b = rng.NextInt64(size / 4096);
                    if (seen.Add(b))
                    {
                        volume.Write(b * 4096, block, false);
                    }
                }
            }
            else
            {
                var data = new byte[1 << 20];
                for (long off = 0; off < Overwritten; off += data.Length)
                {
                    volume.Write(off, data, false);
                }
            }

            volume.Flush();
            var growth = pool.GetInfo().UsedBytes - before;
            row(
                $"snapshot space / bytes overwritten, {(random ? "4K random" : "1 MiB sequential")} overwrites of 64 MiB",
                $"{(double)growth / Overwritten:0.00}x ({ByteSize.Format(growth)})",
                "",
                "",
                random ? "<= 2x" : "");
        }
    }
}

/// <summary>Process RSS while serving a volume fully written at 4K random with 256 snapshots.</summary>
internal static class Memory
{
    public static void Run(string dir, long size, long mapCacheBytes, Action<string, string, string, string, string> row)
    {
        using var pool = Pool.Create(Path.Combine(dir, "mem"), new PoolOptions { FirstStoreCapacityBytes = size * 2, MapCacheBytes = mapCacheBytes });
        var volume = pool.CreateVolume("v", size, 4096);
        var rng = new Random(6);
        var block = new byte[4096];
        rng.NextBytes(block);
        var blocks = size / 4096;
        // Every block once, in a scattered order, without holding a permutation in memory:
        // i -> i * P mod blocks is a bijection when P is coprime with the block count.
        const long P = 2654435761;
        if (System.Numerics.BigInteger.GreatestCommonDivisor(P, blocks) != 1)
        {
            throw new InvalidOperationException("pick a size whose block count is coprime with P");
        }

        // RSS once a second: a figure taken at the end of a phase can miss what the phase held.
        long sampledMax = 0;
        using var sampler = new Timer(_ => InterlockedMax(ref sampledMax, Rss()), null, TimeSpan.Zero, TimeSpan.FromSeconds(1));
        var sw = Stopwatch.StartNew();
        var perSnapshot = blocks / 256;
        for (var i = 0L; i < blocks; i++)
        {
            volume.Write((long)((ulong)i * P % (ulong)blocks) * 4096, block, false);
            if (i % perSnapshot == perSnapshot - 1)
            {
                pool.CreateSnapshot("v", $"s{i / perSnapshot}");
            }
        }

        var writeRate = blocks / sw.Elapsed.TotalSeconds;
        GC.Collect();
        Console.WriteLine($"wrote {ByteSize.Format(size)} at 4K random with {pool.ListSnapshots("v").Count} snapshots in {sw.Elapsed.TotalSeconds:0} s");
        var afterWrite = Rss();
        var maxWriting = Interlocked.Exchange(ref sampledMax, afterWrite);
        Console.WriteLine($"after writing: GC committed {ByteSize.Format(GC.GetGCMemoryInfo().TotalCommittedBytes)}; {GlibcHeap(trim: false)}");
        var readRate = Io.Measure(20, 1, size, 4096, random: true, (off, buf) => volume.Read(off, buf));
        var afterRead = Rss();
        var maxReading = Math.Max(Interlocked.Read(ref sampledMax), afterRead);
        var gc = GC.GetGCMemoryInfo();
        var engine = pool.GetMemoryUsage();
        Console.WriteLine($"engine: map cache {ByteSize.Format(engine.MapCacheBytes)}, recycled pages {ByteSize.Format(engine.RecycledPageBytes)}, block cache {ByteSize.Format(engine.BlockCacheBytes)}, memtables {ByteSize.Format(engine.MemtableBytes)}, table readers {ByteSize.Format(engine.TableReaderBytes)}");
        Console.WriteLine($"managed heap {ByteSize.Format(gc.HeapSizeBytes)}, GC committed {ByteSize.Format(gc.TotalCommittedBytes)}, GC collections gen0/1/2 {GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)}");
        var ssts = Directory.GetFiles(Path.Combine(dir, "mem"), "*.sst", SearchOption.AllDirectories);
        Console.WriteLine($"metadata: {ssts.Length} table files, {ByteSize.Format(ssts.Sum(f => new FileInfo(f).Length))}");
        Console.WriteLine($"RSS anonymous {ByteSize.Format(Status("/proc/self/smaps_rollup", "Anonymous:"))}, file {ByteSize.Format(Status("/proc/self/status", "RssFile:"))}, peak {ByteSize.Format(Status("/proc/self/status", "VmHWM:"))}; {GlibcHeap(trim: true)}");
        row($"RSS, {ByteSize.Format(size)} volume written at 4K random, 256 snapshots, {ByteSize.Format(mapCacheBytes)} map cache", $"{ByteSize.Format(afterWrite)} after writing ({writeRate:N0} writes/s), {ByteSize.Format(afterRead)} after 20 s of random reads ({Io.Iops(readRate)}); sampled each second: at most {ByteSize.Format(maxWriting)} while writing, {ByteSize.Format(maxReading)} while reading", "", "", "<= 256 MiB");
    }

    private static void InterlockedMax(ref long location, long value)
    {
        var seen = Interlocked.Read(ref location);
        while (value > seen && Interlocked.CompareExchange(ref location, value, seen) is var now && now != seen)
        {
            seen = now;
        }
    }

    private static long Rss() => Status("/proc/self/status", "VmRSS:");

    private static long Status(string path, string field)
    {
        foreach (var line in File.ReadLines(path))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
            }
        }

        return -1;
    }

    // glibc's view of the native heap (RocksDB allocates through it): what is in use, what is
    // free but still held, and how much a trim would give back (for attribution; not part of the figure).
    private static string GlibcHeap(bool trim)
    {
        var info = MallInfo2();
        var heap = $"glibc heap: arenas {ByteSize.Format((long)info.Arena)}, mmapped {ByteSize.Format((long)info.Hblkhd)}, in use {ByteSize.Format((long)(info.Uordblks + info.Hblkhd))}, free {ByteSize.Format((long)info.Fordblks)}";
        if (!trim)
        {
            return heap;
        }

        var before = Rss();
        var started = Stopwatch.GetTimestamp();
        _ = MallocTrim(0);
        var took = Stopwatch.GetElapsedTime(started);
        return $"{heap}; malloc_trim(0) took RSS from {ByteSize.Format(before)} to {ByteSize.Format(Rss())} in {took.TotalMilliseconds:0.0} ms";
    }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct MallInfo
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern MallInfo MallInfo2();

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);
}
