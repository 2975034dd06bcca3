using System.Collections.Concurrent;
using System.Diagnostics;
using Tidemark.Engine;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>
/// An engine volume (in a pool of its own, in a temporary directory) behind a device that records how
/// the protocols hand it their payloads: each pull from a payload source (IBlockDevice.WriteFrom) with
/// its thread, and the threads of writes from memory. A pull that covers <see cref="FailAtOffset"/>
/// takes 64 KiB of its source and fails, as a disk failing in the middle of a write would. For the
/// splice tests of NBD and iSCSI.
/// </summary>
public sealed class PulledVolume : IDisposable
{
    private readonly TempDirectory _temp;
    private readonly Pool _pool;

    public PulledVolume(string prefix, int blockBytes)
    {
        _temp = new TempDirectory(prefix);
        _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 64L << 20 });
        Device = new PullingDevice(_pool.CreateVolume("vol", 16L << 20, blockBytes));
    }

    public PullingDevice Device { get; }

    /// <summary>Seeded random bytes: the same seed gives the same data.</summary>
    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public byte[] ReadBack(long offset, int length)
    {
        var stored = new byte[length];
        Device.Read(offset, stored);
        return stored;
    }

    public void Dispose()
    {
        _pool.Dispose();
        _temp.Dispose();
    }

    /// <summary>One WriteFrom: the thread's name, whether it was a thread-pool thread, its length, FUA, how long it took.</summary>
    public readonly record struct Pull(string Thread, bool OnPool, int Length, bool Fua, TimeSpan Elapsed);

    public sealed class PullingDevice(IBlockDevice inner) : ForwardingDevice(inner), IBlockDevice
    {
        public ConcurrentQueue<Pull> Pulls { get; } = new();

        /// <summary>The threads that wrote from memory (Write), by name.</summary>
        public ConcurrentBag<string> WriterThreads { get; } = [];

        public long FailAtOffset { get; set; } = -1;

        public override void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
        {
            WriterThreads.Add(Thread.CurrentThread.Name ?? "");
            base.Write(offsetBytes, source, forceUnitAccess);
        }

        public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
        {
            var started = Stopwatch.GetTimestamp();
            var thread = Thread.CurrentThread;
            if (FailAtOffset >= offsetBytes && FailAtOffset < offsetBytes + lengthBytes)
            {
                Pulls.Enqueue(new Pull(thread.Name ?? "", thread.IsThreadPoolThread, lengthBytes, forceUnitAccess, TimeSpan.Zero));
                source.Fill(new byte[64 << 10]);
                throw new StorageException(StorageError.IoError, "the disk failed in the middle of the write");
            }

            Inner.WriteFrom(offsetBytes, lengthBytes, source, forceUnitAccess);
            Pulls.Enqueue(new Pull(thread.Name ?? "", thread.IsThreadPoolThread, lengthBytes, forceUnitAccess, Stopwatch.GetElapsedTime(started)));
        }
    }
}
