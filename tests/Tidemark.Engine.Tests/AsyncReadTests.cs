using Tidemark.Engine.Storage;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Volume.ReadAsync and SnapshotDevice.ReadAsync (ADR 0021): the store's reads end later, in any order,
/// with errors; the gate and the grace period are held until they ended; the atomic-switch sequence
/// lock is kept around the resolution.
/// </summary>
public class AsyncReadTests
{
    private const int Block = 4096;
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(200);

    [Fact]
    public async Task ReadAsync_StoreEndsReadsOutOfOrder_EachGetsItsOwnBlocks()
    {
        HeldReadsStore? store = null;
        using var t = new TempPool(64L << 20, HeldReadsStore.Options(s => store = s));
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var data = Bytes.Pattern(4 * Block, 1);
        v.Write(0, data, forceUnitAccess: false);
        store!.Hold = true;

        var buffers = Enumerable.Range(0, 4).Select(_ => new byte[Block]).ToArray();
        var reads = Enumerable.Range(0, 4).Select(i => v.ReadAsync(i * Block, buffers[i]).AsTask()).ToArray();
        Assert.Equal(4, store.Held.Length);
        Assert.All(reads, r => Assert.False(r.IsCompleted));

        foreach (var held in Enumerable.Reverse(store.Held))
        {
            held.End();
        }

        await Task.WhenAll(reads);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(data.AsSpan(i * Block, Block).ToArray(), buffers[i]);
        }
    }

    [Fact]
    public async Task ReadAsync_StoreFails_TaskFaultsWithTheError_AndTheVolumeIsFreeAgain()
    {
        HeldReadsStore? store = null;
        using var t = new TempPool(64L << 20, HeldReadsStore.Options(s => store = s));
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        v.Write(0, Bytes.Pattern(2 * Block, 2), forceUnitAccess: false);
        store!.Hold = true;

        var failing = v.ReadAsync(0, new byte[Block]).AsTask();
        var fine = v.ReadAsync(Block, new byte[Block]).AsTask();
        store.Held[0].End(new StorageException(StorageError.IoError, "injected: the OSD did not answer"));
        var e = await Assert.ThrowsAsync<StorageException>(() => failing);
        Assert.Equal(StorageError.IoError, e.Error);
        Assert.False(fine.IsCompleted);
        store.Held[0].End();
        await fine;

        // Neither read holds the gate any more: a snapshot goes at once.
        await Task.Run(() => t.Pool.CreateSnapshot("vol", "after")).WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task ReadAsync_WhileTheStoreReads_HoldsTheGracePeriodAndTheGate()
    {
        HeldReadsStore? store = null;
        using var t = new TempPool(64L << 20, HeldReadsStore.Options(s => store = s));
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var data = Bytes.Pattern(Block, 3);
        v.Write(0, data, forceUnitAccess: true);
        store!.Hold = true;
        var buffer = new byte[Block];
        var read = v.ReadAsync(0, buffer).AsTask();

        // A freed block is reused only after every reader that may hold its address left the grace
        // period, and a snapshot waits for the I/O in flight: both wait for the store's read.
        var grace = Task.Run(t.Pool.Grace.WaitForReaders);
        var snapshot = Task.Run(() => t.Pool.CreateSnapshot("vol", "s"));
        await Task.Delay(Settle);
        Assert.False(grace.IsCompleted);
        Assert.False(snapshot.IsCompleted);

        store.Held.Single().End();
        await read;
        await Task.WhenAll(grace, snapshot).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(data, buffer);
    }

    [Fact]
    public async Task ReadAsync_AtomicSwitchDuringResolution_ResolvesAgainAndReadsTheNewBlocksWhole()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        v.Write(0, Bytes.Pattern(64 * Block, 4), forceUnitAccess: false);
        var fresh = Bytes.Pattern(64 * Block, 5);
        var resolutions = 0;
        v.AfterOptimisticResolve = () =>
        {
            // The first resolution saw the old blocks; the switch lands before the check.
            if (++resolutions == 1)
            {
                v.WriteAtomic(0, fresh, forceUnitAccess: false);
            }
        };

        var buffer = new byte[64 * Block];
        await v.ReadAsync(0, buffer);

        Assert.Equal(2, resolutions);
        Assert.Equal(fresh, buffer);
    }

    [Fact]
    public async Task ReadAsync_SwitchDuringEveryAttempt_ResolvesUnderTheRegionLocks()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var resolutions = 0;
        byte[] last = [];
        v.AfterOptimisticResolve = () =>
        {
            last = Bytes.Pattern(16 * Block, 10 + ++resolutions);
            v.WriteAtomic(0, last, forceUnitAccess: false);
        };

        var buffer = new byte[16 * Block];
        await v.ReadAsync(0, buffer);

        Assert.Equal(3, resolutions); // then the locked resolution, which calls no hook
        Assert.Equal(last, buffer);
    }

    [Fact]
    public async Task ReadAsync_FragmentedRange_OneScatteredStoreReadWithHolesZeroed()
    {
        HeldReadsStore? store = null;
        using var t = new TempPool(64L << 20, HeldReadsStore.Options(s => store = s));
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var old = Bytes.Pattern(8 * Block, 6);
        v.Write(0, old, forceUnitAccess: false);
        t.Pool.CreateSnapshot("vol", "s");
        var expected = old.ToArray();
        for (var b = 1; b < 6; b += 2)
        {
            var block = Bytes.Pattern(Block, 20 + b);
            v.Write(b * Block, block, forceUnitAccess: false); // redirected: the range is in runs now
            block.CopyTo(expected, b * Block);
        }

        v.Unmap(7 * Block, Block);
        Array.Clear(expected, 7 * Block, Block);
        store!.Hold = true;

        var buffer = new byte[8 * Block];
        buffer.AsSpan().Fill(0xEE);
        var read = v.ReadAsync(0, buffer).AsTask();
        var held = store.Held.Single();
        Assert.True(held.Reads.Length > 1, "the runs of the range go to the store as one scattered read");
        held.End();
        await read;
        Assert.Equal(expected, buffer);
    }

    [Fact]
    public async Task ReadAsync_NotWholeBlocks_ReadsThroughTheSynchronousPath()
    {
        HeldReadsStore? store = null;
        using var t = new TempPool(64L << 20, HeldReadsStore.Options(s => store = s));
        var v = t.Pool.CreateVolume("vol", 16L << 20, logicalBlockSize: 512);
        var data = Bytes.Pattern(2 * Block, 7);
        v.Write(0, data, forceUnitAccess: false);
        store!.Hold = true;

        var buffer = new byte[1024];
        var read = v.ReadAsync(512, buffer);
        Assert.True(read.IsCompletedSuccessfully);
        await read;
        Assert.Equal(data.AsSpan(512, 1024).ToArray(), buffer);
        Assert.Empty(store.Held);

        var beyond = await Assert.ThrowsAsync<StorageException>(() => v.ReadAsync(16L << 20, new byte[Block]).AsTask());
        Assert.Equal(StorageError.OutOfRange, beyond.Error);
    }

    [Fact]
    public async Task SnapshotReadAsync_WhileTheStoreReads_HoldsTheGraceAndReadsTheSnapshot()
    {
        HeldReadsStore? store = null;
        using var t = new TempPool(64L << 20, HeldReadsStore.Options(s => store = s));
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var old = Bytes.Pattern(2 * Block, 8);
        v.Write(0, old, forceUnitAccess: false);
        t.Pool.CreateSnapshot("vol", "s");
        v.Write(0, Bytes.Pattern(2 * Block, 9), forceUnitAccess: false);
        var snapshot = t.Pool.OpenSnapshot("vol@s");
        store!.Hold = true;

        var buffer = new byte[2 * Block];
        var read = snapshot.ReadAsync(0, buffer).AsTask();
        var grace = Task.Run(t.Pool.Grace.WaitForReaders);
        await Task.Delay(Settle);
        Assert.False(grace.IsCompleted);

        store.Held.Single().End();
        await read;
        await grace.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(old, buffer);
    }
}
