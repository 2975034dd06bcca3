using Tidemark.Engine;
using Tidemark.TestKit;

namespace Tidemark.Replication.Tests;

/// <summary>The hash tree two sites compare: equal data hashes equal, any changed block shows in exactly its granule and block.</summary>
public sealed class HashScanTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tidemark-hashscan-").FullName;
    private readonly Pool _pool;
    private readonly Random _random = new(11);
    private readonly HashScan _scan = new(0x5eed);

    public HashScanTests()
    {
        _pool = Pool.Create(Path.Combine(_dir, "pool"), new PoolOptions { FirstStoreCapacityBytes = 64L << 20 });
    }

    public void Dispose()
    {
        _pool.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public async Task ChangedBlock_ShowsInItsGranuleAndBlockOnly_ZerosAndHolesHashAlike()
    {
        var data = new byte[1 << 20];
        _random.NextBytes(data);
        foreach (var name in new[] { "a", "b" })
        {
            _pool.CreateVolume(name, 4 << 20);
            _pool.GetVolume(name).Write(0, data, false);
        }

        // b: one block changed in granule 5; a: zeros written over a hole at 2 MiB (still all zeros).
        _pool.GetVolume("b").Write((5 * HashScan.GranuleBytes) + (3 * HashScan.BlockBytes), new byte[] { 1 }.Concat(new byte[4095]).ToArray(), false);
        _pool.GetVolume("a").Write(2 << 20, new byte[HashScan.GranuleBytes], false);
        var a = await GranulesAsync("a");
        var b = await GranulesAsync("b");

        var differing = Enumerable.Range(0, a.Length / HashScan.HashBytes).Where(g => !a.AsSpan(g * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(b.AsSpan(g * HashScan.HashBytes, HashScan.HashBytes))).ToList();
        Assert.Equal([5], differing);
        Assert.True(a.AsSpan(32 * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(_scan.ZeroGranule));
        Assert.True(b.AsSpan(40 * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(_scan.ZeroGranule));

        var blocksA = new byte[HashScan.HashBytes * HashScan.BlocksPerGranule];
        var blocksB = new byte[HashScan.HashBytes * HashScan.BlocksPerGranule];
        _scan.BlockHashes(Open("a"), 5, blocksA, new byte[HashScan.GranuleBytes]);
        _scan.BlockHashes(Open("b"), 5, blocksB, new byte[HashScan.GranuleBytes]);
        var differingBlocks = Enumerable.Range(0, HashScan.BlocksPerGranule).Where(i => !blocksA.AsSpan(i * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(blocksB.AsSpan(i * HashScan.HashBytes, HashScan.HashBytes))).ToList();
        Assert.Equal([3], differingBlocks);
    }

    [Fact]
    public async Task GranulePastTheEnd_HashesAsIfTheVolumeGrewIntoZeros()
    {
        var tail = new byte[4096];
        _random.NextBytes(tail);
        _pool.CreateVolume("short", HashScan.GranuleBytes + 8192);
        _pool.CreateVolume("long", 2 * HashScan.GranuleBytes);
        _pool.GetVolume("short").Write(HashScan.GranuleBytes + 4096, tail, false);
        _pool.GetVolume("long").Write(HashScan.GranuleBytes + 4096, tail, false);

        Assert.Equal(2, HashScan.GranuleCount(HashScan.GranuleBytes + 8192));
        Assert.Equal(await GranulesAsync("short"), await GranulesAsync("long"));
    }

    [Fact]
    public async Task HashesReadAhead_OverSeveralReads_EqualGranuleByGranuleHashes()
    {
        // 10 MiB + 4 KiB: three 4 MiB reads, the last one partial and past the end padded with zeros.
        var size = (10L << 20) + 4096;
        var data = new byte[size];
        _random.NextBytes(data);
        data.AsSpan(5 << 20, HashScan.GranuleBytes).Clear();
        _pool.CreateVolume("big", size);
        _pool.GetVolume("big").Write(0, data, false);
        var device = Open("big");
        var count = (int)HashScan.GranuleCount(size);
        var hashes = new byte[count * HashScan.HashBytes];
        var blocks = new byte[count * HashScan.HashBytes * HashScan.BlocksPerGranule];

        await _scan.GranuleHashesAsync(device, 0, count, hashes, blocks);

        var buffer = new byte[HashScan.GranuleBytes];
        var one = new byte[HashScan.HashBytes];
        var oneBlocks = new byte[HashScan.HashBytes * HashScan.BlocksPerGranule];
        for (var g = 0; g < count; g++)
        {
            _scan.GranuleHash(device, g, one, buffer);
            _scan.BlockHashes(device, g, oneBlocks, buffer);
            Assert.True(one.AsSpan().SequenceEqual(hashes.AsSpan(g * HashScan.HashBytes, HashScan.HashBytes)), $"granule {g}");
            Assert.True(oneBlocks.AsSpan().SequenceEqual(blocks.AsSpan(g * oneBlocks.Length, oneBlocks.Length)), $"blocks of granule {g}");
        }

        Assert.True(hashes.AsSpan(80 * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(_scan.ZeroGranule));
        Assert.False(hashes.AsSpan(81 * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(_scan.ZeroGranule));
    }

    [Fact]
    public async Task ReadFailingInTheReadAhead_IsThrownAsItself()
    {
        _pool.CreateVolume("v", 16L << 20);
        var failing = new FailingDevice(Open("v"), failAt: 8L << 20);
        var count = (int)HashScan.GranuleCount(failing.SizeBytes);

        var error = await Assert.ThrowsAsync<StorageException>(() => _scan.GranuleHashesAsync(failing, 0, count, new byte[count * HashScan.HashBytes]));

        Assert.Equal(StorageError.IoError, error.Error);
        Assert.Equal(3, failing.Reads); // the reads before and the failing one; none after it
    }

    [Fact]
    public void EveryScanHashesWithItsOwnKey()
    {
        Assert.False(new HashScan(1).ZeroBlock.SequenceEqual(new HashScan(2).ZeroBlock));
        Assert.True(new HashScan(3).ZeroGranule.SequenceEqual(new HashScan(3).ZeroGranule));
    }

    private async Task<byte[]> GranulesAsync(string volume)
    {
        var device = Open(volume);
        var count = (int)HashScan.GranuleCount(device.SizeBytes);
        var hashes = new byte[count * HashScan.HashBytes];
        await _scan.GranuleHashesAsync(device, 0, count, hashes);
        return hashes;
    }

    private SnapshotDevice Open(string volume)
    {
        var name = $"s{Guid.NewGuid():N}"[..12];
        _pool.CreateSnapshot(volume, name);
        return _pool.OpenSnapshot($"{volume}@{name}");
    }

    /// <summary>A snapshot device (read-only, as its inner one) whose read at <c>failAt</c> fails as a broken disk would.</summary>
    private sealed class FailingDevice(IBlockDevice inner, long failAt) : ForwardingDevice(inner)
    {
        private int _reads;

        public int Reads => _reads;

        public override void Read(long offsetBytes, Span<byte> destination)
        {
            Interlocked.Increment(ref _reads);
            if (offsetBytes == failAt)
            {
                throw new StorageException(StorageError.IoError, "the disk failed");
            }

            base.Read(offsetBytes, destination);
        }
    }
}
