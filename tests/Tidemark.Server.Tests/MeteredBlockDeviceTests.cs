using Tidemark.Server.Metrics;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>The metering wrapper forwards the asynchronous read (ADR 0021) and counts it when it ended.</summary>
public sealed class MeteredBlockDeviceTests
{
    [Fact]
    public async Task ReadAsync_InnerReadPending_ForwardedAndCountedWhenItEnds()
    {
        var inner = new PendingReads(new MemoryBlockDevice(1 << 20));
        inner.Inner.Write(4096, TestData(), forceUnitAccess: false);
        var stats = new DeviceStats("vol");
        IBlockDevice device = new MeteredBlockDevice(inner, stats);

        var buffer = new byte[4096];
        var read = device.ReadAsync(4096, buffer).AsTask();
        Assert.False(read.IsCompleted); // the inner device's own asynchronous read, not the synchronous default
        Assert.Equal(0, stats[IoOperation.Read].Count);

        inner.EndAll();
        await read;
        Assert.Equal(TestData(), buffer);
        Assert.Equal((1, 4096, 0), (stats[IoOperation.Read].Count, stats[IoOperation.Read].Bytes, stats[IoOperation.Read].Errors));
    }

    [Fact]
    public async Task ReadAsync_InnerReadFails_FaultsWithItsErrorAndCountsAnError()
    {
        var inner = new PendingReads(new MemoryBlockDevice(1 << 20));
        var stats = new DeviceStats("vol");
        IBlockDevice device = new MeteredBlockDevice(inner, stats);

        var read = device.ReadAsync(0, new byte[4096]).AsTask();
        inner.EndAll(new StorageException(StorageError.IoError, "injected"));

        Assert.Equal(StorageError.IoError, (await Assert.ThrowsAsync<StorageException>(() => read)).Error);
        Assert.Equal((1, 1), (stats[IoOperation.Read].Count, stats[IoOperation.Read].Errors));
    }

    private static byte[] TestData() => [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 7))];

    /// <summary>A device whose asynchronous reads stay pending until the test ends them.</summary>
    private sealed class PendingReads(IBlockDevice inner) : ForwardingDevice(inner), IBlockDevice
    {
        private readonly List<(long Offset, Memory<byte> Destination, TaskCompletionSource Done)> _pending = [];

        public new IBlockDevice Inner => base.Inner;

        public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            var done = new TaskCompletionSource();
            _pending.Add((offsetBytes, destination, done));
            return new ValueTask(done.Task);
        }

        public void EndAll(Exception? error = null)
        {
            foreach (var (offset, destination, done) in _pending)
            {
                if (error is null)
                {
                    base.Inner.Read(offset, destination.Span);
                    done.SetResult();
                }
                else
                {
                    done.SetException(error);
                }
            }

            _pending.Clear();
        }
    }
}
