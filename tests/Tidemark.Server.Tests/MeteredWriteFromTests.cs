using Tidemark.Server.Metrics;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>
/// The metrics decorator forwards WriteFrom to the device it wraps (so an engine volume behind it can
/// let its store pull the payload: no copy through memory in the decorator) and counts it as a write.
/// </summary>
public sealed class MeteredWriteFromTests
{
    [Fact]
    public void WriteFrom_ReachesTheInnerDevicesWriteFrom_AndIsCountedAsAWrite()
    {
        var inner = new PullRecordingDevice(new MemoryBlockDevice(1 << 20));
        var stats = new DeviceStats("vol");
        IBlockDevice metered = new MeteredBlockDevice(inner, stats);
        var data = new byte[64 << 10];
        new Random(1).NextBytes(data);

        metered.WriteFrom(4096, data.Length, new ArrayPayloadSource(data), forceUnitAccess: true);

        Assert.Equal(new[] { (4096L, data.Length, true) }, inner.Pulls);
        Assert.Equal(1, stats[IoOperation.Write].Count);
        Assert.Equal(data.Length, stats[IoOperation.Write].Bytes);
        var read = new byte[data.Length];
        metered.Read(4096, read);
        Assert.Equal(data, read);
    }

    [Fact]
    public void WriteFrom_InnerDeviceOutOfSpace_CountsTheRefusal()
    {
        var stats = new DeviceStats("vol");
        IBlockDevice metered = new MeteredBlockDevice(new PullRecordingDevice(new MemoryBlockDevice(1 << 20)) { Full = true }, stats);

        Assert.Throws<StorageException>(() => metered.WriteFrom(0, 4096, new ArrayPayloadSource(new byte[4096]), forceUnitAccess: false));

        Assert.Equal(1, stats.NoSpaceErrors);
        Assert.Equal(1, stats[IoOperation.Write].Errors);
    }

    private sealed class PullRecordingDevice(IBlockDevice inner) : ForwardingDevice(inner), IBlockDevice
    {
        public List<(long Offset, int Length, bool Fua)> Pulls { get; } = [];

        public bool Full { get; init; }

        public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
        {
            Pulls.Add((offsetBytes, lengthBytes, forceUnitAccess));
            if (Full)
            {
                throw new StorageException(StorageError.NoSpace, "full");
            }

            PayloadSources.WriteThroughBuffer(this, offsetBytes, lengthBytes, source, forceUnitAccess);
        }
    }
}
