using System.Runtime.InteropServices;

namespace Tidemark.Engine.Metadata;

/// <summary>
/// Settings for glibc's malloc, which RocksDB allocates through. Left at its defaults, glibc held
/// 120 MiB of freed memory in its arenas after a 20 GiB volume was written (docs/BENCHMARKS.md,
/// memory): RocksDB frees large buffers (memtable arena blocks, table readers of compacted files)
/// that glibc, after the first such free, no longer maps separately but carves out of its heaps,
/// where the holes they leave are rarely given back. Applied once per process by the first pool
/// opened; the process is the server (or a benchmark or test host), whose native heap is RocksDB's.
/// </summary>
internal static partial class NativeHeap
{
    // glibc malloc.h parameter numbers.
    private const int TrimThresholdParameter = -1;
    private const int MmapThresholdParameter = -3;

    /// <summary>
    /// Allocations from this size up get their own mapping, returned to the system when freed.
    /// Setting it also turns off glibc's dynamic threshold, which rises to the largest block freed
    /// (up to 32 MiB) and then puts such blocks in the heap.
    /// </summary>
    public const int MmapThresholdBytes = 128 * 1024;

    /// <summary>How often freed heap memory is given back (see <see cref="Trim"/>).</summary>
    public static readonly TimeSpan TrimPeriod = TimeSpan.FromSeconds(10);

    private static int s_configured;
    private static PeriodicWorker? s_trimmer;

    public static void Configure()
    {
        if (!OperatingSystem.IsLinux() || Interlocked.Exchange(ref s_configured, 1) != 0)
        {
            return;
        }

        try
        {
            _ = MallOpt(MmapThresholdParameter, MmapThresholdBytes);
            s_trimmer = new PeriodicWorker(TrimPeriod, Trim); // for the process's lifetime: never stopped
        }
        catch (EntryPointNotFoundException)
        {
            // Not glibc (musl has no such tuning); nothing to set.
        }
    }

    /// <summary>
    /// For a process with a RADOS store (ADR 0017): librados copies every write into a buffer it
    /// mallocs, and the copy of a 1 MiB write past <see cref="MmapThresholdBytes"/> was a fresh
    /// mapping each time: 256 zeroed page faults on the copy and an munmap on release, about half
    /// the server's CPU per MiB written (docs/BENCHMARKS.md, RADOS run 6). Blocks up to
    /// <paramref name="largestBytes"/> (an object) come from the heaps instead, where the next write
    /// reuses pages already mapped, and up to <paramref name="keepTopBytes"/> free at a heap's top is
    /// kept between writes; <see cref="Trim"/> still gives free pages back every
    /// <see cref="TrimPeriod"/>, so an idle server holds no more than before.
    /// </summary>
    public static void ForLargeCopies(int largestBytes, int keepTopBytes)
    {
        Configure();
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            _ = MallOpt(MmapThresholdParameter, Math.Max(MmapThresholdBytes, largestBytes));
            _ = MallOpt(TrimThresholdParameter, keepTopBytes);
        }
        catch (EntryPointNotFoundException)
        {
            // Not glibc: nothing to set.
        }
    }

    /// <summary>
    /// Gives the free pages inside glibc's heaps back to the system. Blocks below the mmap threshold
    /// (RocksDB's 16 KiB data blocks) still come from the heaps, and when the block cache replaces
    /// blocks read by one thread with blocks read by another, the first thread's heap keeps the
    /// holes: 90 MiB of them after 20 s of random reads at 20 GiB (docs/BENCHMARKS.md, memory).
    /// </summary>
    public static void Trim()
    {
        try
        {
            _ = MallocTrim(0);
        }
        catch (EntryPointNotFoundException)
        {
            // Not glibc: nothing to give back this way.
        }
    }

    /// <summary>
    /// glibc's heap: bytes handed out (in its arenas and in separate mappings) and bytes freed but
    /// still held in its arenas; (0, 0) where the C library is not glibc.
    /// </summary>
    public static (long InUseBytes, long FreeBytes) GetUsage()
    {
        try
        {
            var info = MallInfo2();
            return ((long)(info.Uordblks + info.Hblkhd), (long)info.Fordblks);
        }
        catch (EntryPointNotFoundException)
        {
            return (0, 0);
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo MallInfo2();

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int MallOpt(int parameter, int value);
}
