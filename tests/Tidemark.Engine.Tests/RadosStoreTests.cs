using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Tidemark.Engine.Storage;
using Tidemark.TestKit;

namespace Tidemark.Engine.Tests;

/// <summary>Parsing of RADOS store locations: needs no cluster.</summary>
public class RadosLocationTests
{
    [Fact]
    public void Parse_FullLocation_KeepsEveryPart()
    {
        var where = RadosLocation.Parse("rados:rbd/pool1?conf=/etc/ceph/x.conf&id=client.tm&timeout=5");
        Assert.Equal(new RadosLocation("rbd", "pool1", "/etc/ceph/x.conf", "tm", 5), where);
        Assert.Equal("rados:rbd/pool1?conf=/etc/ceph/x.conf&id=tm&timeout=5", where.ToString());
        Assert.Equal(where, RadosLocation.Parse(where.ToString()));
    }

    [Fact]
    public void Parse_PoolOnly_TakesDefaults()
    {
        var where = RadosLocation.Parse("rados:rbd");
        Assert.Equal(new RadosLocation("rbd", "tidemark", "/etc/ceph/ceph.conf", "admin", 30), where);
        Assert.Equal("tidemark.data.0000000000000001", where.DataObject(1));
    }

    [Theory]
    [InlineData("rados:")]
    [InlineData("rados:/x")]
    [InlineData("rados:po ol")]
    [InlineData("rados:rbd/")]
    [InlineData("rados:rbd?user=x")]
    [InlineData("rados:rbd?timeout=0")]
    [InlineData("rados:rbd?timeout=abc")]
    [InlineData("rados:rbd?conf=")]
    [InlineData("rados:rbd?id=a/b")]
    public void Parse_Malformed_InvalidArgumentSayingTheForm(string location)
    {
        var ex = Assert.Throws<StorageException>(() => RadosLocation.Parse(location));
        Assert.Equal(StorageError.InvalidArgument, ex.Error);
        Assert.Contains("rados:POOL", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_MissingConf_NotFoundNamingTheFile()
    {
        var ex = Assert.Throws<StorageException>(() => RadosBackingStore.Open("rados:rbd?conf=/nonexistent/ceph.conf", 1 << 20));
        Assert.Equal(StorageError.NotFound, ex.Error);
        Assert.Contains("/nonexistent/ceph.conf", ex.Message, StringComparison.Ordinal);
    }
}

/// <summary>The RADOS store against a real one-node cluster (one per class): I/O, the lock object, space release, a pool on it.</summary>
public class RadosStoreTests(CephCluster cluster) : IClassFixture<CephCluster>
{
    private const long Capacity = 64L << 20;


    [Fact]
    public void ReadWrite_AcrossObjectBoundary_RoundTripsAndUnwrittenReadsZero()
    {
        using var store = RadosBackingStore.Open(cluster.Location(), Capacity);
        var data = Bytes.Pattern(1 << 20, 1);
        var offset = RadosBackingStore.ObjectBytes - (256 << 10); // 256K in object 0, 768K in object 1
        store.Write(offset, data);
        store.Flush();
        var back = new byte[data.Length];
        store.Read(offset, back);
        Assert.Equal(data, back);

        var untouched = new byte[8192];
        Array.Fill(untouched, (byte)0xee);
        store.Read(3 * (long)RadosBackingStore.ObjectBytes, untouched); // object never written
        Assert.All(untouched, b => Assert.Equal(0, b));
        store.Read(offset + data.Length, untouched); // past the end of object 1's data
        Assert.All(untouched, b => Assert.Equal(0, b));
    }

    [Fact]
    public void ReadScattered_RunsOfAFragmentedRange_StartTogetherAndLandInPlace()
    {
        using var store = RadosBackingStore.Open(cluster.Location(), Capacity);
        var data = Bytes.Pattern(2 * RadosBackingStore.ObjectBytes, 3);
        store.Write(0, data);
        store.Flush();

        // Sixteen 4 KiB runs scattered over two objects, written back to front into one buffer, and
        // one run of a never-written object (zeros): the runs of a volume range overwritten in
        // places after snapshots. Every piece is started before any is waited for.
        var reads = new List<StoreRead>();
        for (var i = 0; i < 16; i++)
        {
            reads.Add(new StoreRead((i * 2L * RadosBackingStore.ObjectBytes / 16) + 8192, (15 - i) * 4096, 4096));
        }

        reads.Add(new StoreRead(3L * RadosBackingStore.ObjectBytes, 16 * 4096, 8192));
        var back = new byte[18 * 4096];
        back.AsSpan().Fill(0xee);
        ((IBackingStore)store).ReadScattered(reads.ToArray(), back);

        Assert.True(store.PeakReadsInFlight >= 17, $"peak reads in flight {store.PeakReadsInFlight}: the runs were read one after another");
        foreach (var read in reads.Take(16))
        {
            Assert.Equal(data.AsSpan((int)read.OffsetBytes, 4096).ToArray(), back.AsSpan(read.DestinationOffset, 4096).ToArray());
        }

        Assert.All(back.AsSpan(16 * 4096).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public void VolumeRead_FragmentedAfterSnapshot_ReadsEveryRunRight()
    {
        using var t = new TempPool(capacityBytes: 64L << 20, options: new PoolOptions { FirstStorePath = cluster.Location() });
        var volume = t.Pool.CreateVolume("v", 16L << 20);
        var expected = Bytes.Pattern(1 << 20, 1);
        volume.Write(0, expected, forceUnitAccess: false);
        t.Pool.CreateSnapshot("v", "s");

        // Every third block redirected elsewhere, and one block unmapped: a 1 MiB read is 100+ runs and a hole.
        for (var block = 0; block < 256; block += 3)
        {
            var patch = Bytes.Pattern(4096, 1000 + block);
            volume.Write(block * 4096L, patch, forceUnitAccess: false);
            patch.CopyTo(expected, block * 4096);
        }

        volume.Unmap(128 * 4096, 4096);
        Array.Clear(expected, 128 * 4096, 4096);

        Assert.Equal(expected, Bytes.Read(volume, 0, 1 << 20));
        Assert.Equal(Bytes.Pattern(1 << 20, 1), Bytes.Read(t.Pool.OpenSnapshot("v@s"), 0, 1 << 20));
    }

    [Fact]
    public async Task Read_ManyThreadsAtOnce_EachGetsItsDataAndPiecesGoTogether()
    {
        using var store = RadosBackingStore.Open(cluster.Location(), Capacity);
        const int Region = 256 << 10;
        var regions = (int)(5L * RadosBackingStore.ObjectBytes / Region); // five objects' worth
        for (var i = 0; i < regions; i++)
        {
            store.Write((long)i * Region, Bytes.Pattern(Region, i));
        }

        store.Flush();

        // A read over four objects starts its four pieces before it waits for any of them.
        var whole = new byte[3 * RadosBackingStore.ObjectBytes + (2 * Region)];
        store.Read(RadosBackingStore.ObjectBytes - Region, whole);
        Assert.True(store.PeakReadsInFlight >= 4, $"peak reads in flight {store.PeakReadsInFlight}");
        var first = (RadosBackingStore.ObjectBytes / Region) - 1;
        for (var i = 0; i < whole.Length / Region; i++)
        {
            Assert.Equal(Bytes.Pattern(Region, first + i), whole.AsSpan(i * Region, Region).ToArray());
        }

        // Eight readers at once, reads of 4 KiB to 512 KiB that may straddle regions and objects.
        var readers = Enumerable.Range(0, 8).Select(r => Task.Run(() =>
        {
            var random = new Random(r);
            for (var n = 0; n < 40; n++)
            {
                var length = 4096 << random.Next(8);
                var offset = random.NextInt64((((long)regions * Region) - length) / 4096) * 4096;
                var back = new byte[length];
                store.Read(offset, back);
                for (var done = 0; done < length;)
                {
                    var region = (int)((offset + done) / Region);
                    var inRegion = (int)((offset + done) % Region);
                    var n2 = Math.Min(length - done, Region - inRegion);
                    Assert.Equal(Bytes.Pattern(Region, region).AsSpan(inRegion, n2).ToArray(), back.AsSpan(done, n2).ToArray());
                    done += n2;
                }
            }
        })).ToArray();
        await Task.WhenAll(readers).WaitAsync(TimeSpan.FromMinutes(2));
    }

    [Fact]
    public async Task Read_RightAfterUnflushedWrites_SeesTheAcknowledgedData()
    {
        using var store = RadosBackingStore.Open(cluster.Location(), Capacity);

        // Each writer overwrites its own range again and again without a flush and reads it back at
        // once (whole, and a piece overlapping only the newest write's start): every read must see
        // the write that returned before it, while other writers keep the queue full.
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            var offset = (w * (long)RadosBackingStore.ObjectBytes) + (RadosBackingStore.ObjectBytes / 2) - (32 << 10);
            for (var i = 0; i < 30; i++)
            {
                var data = Bytes.Pattern(64 << 10, (w * 100) + i);
                store.Write(offset, data);
                var back = new byte[64 << 10];
                store.Read(offset, back);
                Assert.Equal(data, back);
                var piece = new byte[8192];
                store.Read(offset - 4096, piece);
                Assert.Equal(data.AsSpan(0, 4096).ToArray(), piece.AsSpan(4096).ToArray());
            }
        })).ToArray();
        await Task.WhenAll(writers).WaitAsync(TimeSpan.FromMinutes(2));
        store.Flush();
        Assert.Equal(0, store.WritesInFlight);
    }

    [Fact]
    public async Task ReadAsync_ManyFromOneThread_InFlightTogetherPastTheGate_EachGetsItsDataAndZerosForHoles()
    {
        using var store = RadosBackingStore.Open(cluster.Location(), Capacity);
        IBackingStore io = store;
        var data = Bytes.Pattern(2 * RadosBackingStore.ObjectBytes, 11);
        store.Write(0, data);
        store.Flush();

        // 100 reads started from one thread with nothing waiting for them: more than the read gate
        // holds, so the rest wait for room without a thread. Some straddle the two objects, some lie
        // in a never-written object (ENOENT) or past object 1's end... all land whole.
        var reads = new List<(long Offset, byte[] Buffer, Task Done)>();
        var random = new Random(11);
        for (var i = 0; i < 100; i++)
        {
            var length = 4096 << random.Next(5);
            var offset = i % 10 == 9
                ? (3L * RadosBackingStore.ObjectBytes) + (random.Next(256) * 4096L)
                : random.NextInt64(((2L * RadosBackingStore.ObjectBytes) - length) / 4096) * 4096;
            var buffer = new byte[length];
            buffer.AsSpan().Fill(0xee);
            reads.Add((offset, buffer, io.ReadAsync(offset, buffer).AsTask()));
        }

        await OffLibradosAsync(Task.WhenAll(reads.Select(r => r.Done)).WaitAsync(TimeSpan.FromMinutes(2)));
        foreach (var (offset, buffer, _) in reads)
        {
            var expected = offset >= data.Length ? new byte[buffer.Length] : data.AsSpan((int)offset, buffer.Length).ToArray();
            Assert.Equal(expected, buffer);
        }

        Assert.True(store.PeakReadsInFlight > 8, $"peak reads in flight {store.PeakReadsInFlight}: the reads went one after another");
        Assert.True(store.PeakReadsInFlight <= RadosReadGate.MaxReads + 1, $"peak reads in flight {store.PeakReadsInFlight}: past the gate");

        // A piece straddling the objects, and the scattered form of a fragmented range.
        var straddle = new byte[1 << 20];
        await OffLibradosAsync(io.ReadAsync(RadosBackingStore.ObjectBytes - (256 << 10), straddle).AsTask());
        Assert.Equal(data.AsSpan(RadosBackingStore.ObjectBytes - (256 << 10), 1 << 20).ToArray(), straddle);
        StoreRead[] runs = [new(8192, 4096, 4096), new(RadosBackingStore.ObjectBytes + 4096L, 0, 4096), new(5L * RadosBackingStore.ObjectBytes, 8192, 4096)];
        var scattered = new byte[12288];
        scattered.AsSpan().Fill(0xee);
        await OffLibradosAsync(io.ReadScatteredAsync(runs, scattered).AsTask());
        Assert.Equal(data.AsSpan(RadosBackingStore.ObjectBytes + 4096, 4096).ToArray(), scattered.AsSpan(0, 4096).ToArray());
        Assert.Equal(data.AsSpan(8192, 4096).ToArray(), scattered.AsSpan(4096, 4096).ToArray());
        Assert.All(scattered.AsSpan(8192).ToArray(), b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task VolumeReadAsync_FragmentedAfterSnapshotAndRightAfterWrites_ReadsEveryRunRight()
    {
        using var t = new TempPool(capacityBytes: 64L << 20, options: new PoolOptions { FirstStorePath = cluster.Location() });
        var volume = t.Pool.CreateVolume("v", 16L << 20);
        var expected = Bytes.Pattern(1 << 20, 12);
        volume.Write(0, expected, forceUnitAccess: false);
        t.Pool.CreateSnapshot("v", "s");
        for (var block = 0; block < 256; block += 5)
        {
            var patch = Bytes.Pattern(4096, 2000 + block);
            volume.Write(block * 4096L, patch, forceUnitAccess: false); // not flushed: still in flight, maybe
            patch.CopyTo(expected, block * 4096);
        }

        var whole = new byte[1 << 20];
        var blocks = Enumerable.Range(0, 64).Select(_ => new byte[4096]).ToArray();
        var pending = blocks.Select((b, i) => volume.ReadAsync(i * 4096L, b).AsTask()).Append(volume.ReadAsync(0, whole).AsTask()).ToArray();
        await OffLibradosAsync(Task.WhenAll(pending).WaitAsync(TimeSpan.FromMinutes(1)));

        Assert.Equal(expected, whole);
        for (var i = 0; i < blocks.Length; i++)
        {
            Assert.Equal(expected.AsSpan(i * 4096, 4096).ToArray(), blocks[i]);
        }

        var old = new byte[1 << 20];
        await OffLibradosAsync(t.Pool.OpenSnapshot("v@s").ReadAsync(0, old).AsTask());
        Assert.Equal(Bytes.Pattern(1 << 20, 12), old);
    }

    /// <summary>
    /// An asynchronous read ends on librados's finisher thread, and an await's continuation may run
    /// there: the test goes on on the thread pool instead (closing the store on the finisher thread
    /// would have librados join that thread from itself).
    /// </summary>
    private static async Task OffLibradosAsync(Task task)
    {
        try
        {
            await task;
        }
        finally
        {
            await Task.Yield(); // queued to the thread pool (or the test's context), never inline
        }
    }

    [Fact]
    public void Write_PastTheBoundInFlight_DrainsToTheResumeMarkNotOneBelowIt()
    {
        using var store = RadosBackingStore.Open(cluster.Location(), Capacity);

        // Writes are only reaped by a writer past the bound or a flush, so the count is exact: the
        // write that takes the queue past MaxWrites waits until ResumeWrites are left (one sleep for
        // the next MaxWrites - ResumeWrites writes), not for the oldest alone (a sleep per write).
        var data = Bytes.Pattern(4096, 7);
        for (var i = 0; i < RadosWriteQueue.MaxWrites; i++)
        {
            store.Write(i * 8192L, data);
        }

        Assert.Equal(RadosWriteQueue.MaxWrites, store.WritesInFlight);
        store.Write(RadosWriteQueue.MaxWrites * 8192L, data);
        Assert.Equal(RadosWriteQueue.ResumeWrites, store.WritesInFlight);

        store.Flush();
        Assert.Equal(0, store.WritesInFlight);
        var back = new byte[4096];
        store.Read(RadosWriteQueue.MaxWrites * 8192L, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public void Read_AfterWritesTheClusterAnswered_TakesThemOffTheQueueWithoutAFlush()
    {
        using var store = RadosBackingStore.Open(cluster.Location(), Capacity);
        var data = Bytes.Pattern(4096, 9);
        for (var i = 0; i < 40; i++)
        {
            store.Write(i * 8192L, data);
        }

        // Only a writer at the bound or a flush waits for writes; a reader takes off, without
        // waiting, those RADOS already answered, so it never looks through hundreds of finished ones.
        Assert.Equal(40, store.WritesInFlight);
        var back = new byte[4096];
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (store.WritesInFlight > 0 && DateTime.UtcNow < deadline)
        {
            store.Read(RadosBackingStore.ObjectBytes, back); // another object: overlaps none of them
            Thread.Sleep(10);
        }

        Assert.Equal(0, store.WritesInFlight);
        store.Read(39 * 8192L, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public void Write_ObjectSizedWritesPastTheByteBound_DrainBelowItAtFarFewerThanTheCountBound()
    {
        // The count bound is deep for small writes (the OSD serves many per wake-up); the byte bound
        // still caps what large writes hold in memory.
        using var store = RadosBackingStore.Open(cluster.Location(), 2 * RadosWriteQueue.MaxBytes);
        var data = Bytes.Pattern(RadosBackingStore.ObjectBytes, 8);
        var writes = (int)(RadosWriteQueue.MaxBytes / RadosBackingStore.ObjectBytes) + 1;
        for (var i = 0; i < writes; i++)
        {
            store.Write(i * (long)RadosBackingStore.ObjectBytes, data);
            Assert.True((long)store.WritesInFlight * RadosBackingStore.ObjectBytes <= RadosWriteQueue.MaxBytes, $"{store.WritesInFlight} object-sized writes in flight after write {i}");
        }

        store.Flush();
        var back = new byte[4096];
        store.Read((writes - 1) * (long)RadosBackingStore.ObjectBytes, back);
        Assert.Equal(data.AsSpan(0, 4096).ToArray(), back);
    }

    [Fact]
    public void WriteQueue_CountBound_DeepEnoughForTheOsdToServeManyWritesPerWakeUp()
    {
        // Measured (ADR 0017, BENCHMARKS "4K writes on RADOS"): at 64 writes in flight the OSD had
        // ~35 at once and spent ~150 µs of CPU per 4 KiB write; at 512 it had ~140, as with RBD.
        Assert.True(RadosWriteQueue.MaxWrites >= 512, "a shallow write queue costs the OSD a wake-up per write");
        Assert.True(RadosWriteQueue.ResumeWrites >= RadosWriteQueue.MaxWrites / 2, "a writer at the bound must leave the OSD most of the queue");
        Assert.True(RadosWriteQueue.ResumeWrites < RadosWriteQueue.MaxWrites - 16, "a writer at the bound must sleep once per many writes");
    }

    [Fact]
    public void Write_BeyondCapacity_OutOfRange()
    {
        using var store = RadosBackingStore.Open(cluster.Location(), Capacity);
        var ex = Assert.Throws<StorageException>(() => store.Write(Capacity - 4096, new byte[8192]));
        Assert.Equal(StorageError.OutOfRange, ex.Error);
    }

    [Fact]
    public void SecondOpen_SameLocation_RefusedNamingTheHolderUntilTheFirstCloses()
    {
        var location = cluster.Location();
        using (RadosBackingStore.Open(location, Capacity))
        {
            var ex = Assert.Throws<StorageException>(() => RadosBackingStore.Open(location, Capacity));
            Assert.Equal(StorageError.Busy, ex.Error);
            Assert.Contains("in use by another Tidemark server", ex.Message, StringComparison.Ordinal);
            Assert.Contains("client.", ex.Message, StringComparison.Ordinal);
            Assert.Contains($"pid {Environment.ProcessId}", ex.Message, StringComparison.Ordinal);
        }

        using var again = RadosBackingStore.Open(location, Capacity);
        Assert.Equal(Capacity, again.CapacityBytes);
    }

    [Fact]
    public void LeaseLapsedAndAnotherServerHeldTheStoreMeanwhile_RefusedForGoodNamingIt()
    {
        var prefix = "l" + Guid.NewGuid().ToString("N")[..10];
        using var store = RadosBackingStore.Open(cluster.Location(prefix), Capacity, lease: TimeSpan.FromSeconds(3));
        store.Write(0, Bytes.Pattern(4096, 1));
        store.Flush();

        // What a lapse looks like from the cluster: this open's lock is gone, and another server
        // took the store, wrote its note and let it go again.
        var lockObject = $"{prefix}.lock";
        using var info = System.Text.Json.JsonDocument.Parse(cluster.Rados("-p", CephCluster.PoolName, "lock", "info", lockObject, "tidemark").AssertSuccess().StandardOutput);
        var locker = info.RootElement.GetProperty("lockers")[0];
        cluster.Rados(
            "-p", CephCluster.PoolName, "lock", "break", lockObject, "tidemark", locker.GetProperty("name").GetString()!,
            "--lock-cookie", locker.GetProperty("cookie").GetString()!).AssertSuccess();
        var note = Path.Combine(cluster.Directory, prefix + ".note");
        File.WriteAllText(note, "host elsewhere pid 4242 started 1 boot b cookie theirs since then");
        cluster.Rados("-p", CephCluster.PoolName, "put", lockObject, note).AssertSuccess();

        // The next renewal (a second, at this lease) finds the lock free but the note not its own.
        var deadline = DateTime.UtcNow.AddMinutes(1);
        StorageException? refused = null;
        while (refused is null && DateTime.UtcNow < deadline)
        {
            try
            {
                store.Write(4096, Bytes.Pattern(4096, 2));
                Thread.Sleep(100);
            }
            catch (StorageException ex) when (ex.Message.Contains("lost its lock", StringComparison.Ordinal))
            {
                refused = ex;
            }
        }

        Assert.NotNull(refused);
        Assert.Contains("another server held it", refused.Message, StringComparison.Ordinal);
        Assert.Contains("host elsewhere pid 4242", refused.Message, StringComparison.Ordinal);
        Assert.Throws<StorageException>(store.Flush);
        Assert.Throws<StorageException>(() => store.Read(0, new byte[4096]));
    }

    [Fact]
    public void Discard_WholeAndPartialObjects_RemovesAndZeroes()
    {
        var prefix = "d" + Guid.NewGuid().ToString("N")[..10];
        using var store = RadosBackingStore.Open(cluster.Location(prefix), Capacity);
        var object1 = (long)RadosBackingStore.ObjectBytes;
        store.Write(object1, Bytes.Pattern(RadosBackingStore.ObjectBytes, 2));
        store.Write(2 * object1, Bytes.Pattern(64 << 10, 3));
        Assert.Equal(0, cluster.Rados("-p", CephCluster.PoolName, "stat", $"{prefix}.data.0000000000000001").ExitCode);

        store.Discard(object1, object1 + 4096); // object 1 whole, the first 4K of object 2
        Assert.NotEqual(0, cluster.Rados("-p", CephCluster.PoolName, "stat", $"{prefix}.data.0000000000000001").ExitCode);
        var back = new byte[64 << 10];
        store.Read(2 * object1, back);
        Assert.All(back.AsSpan(0, 4096).ToArray(), b => Assert.Equal(0, b));
        Assert.Equal(Bytes.Pattern(64 << 10, 3).AsSpan(4096).ToArray(), back.AsSpan(4096).ToArray());
        store.Read(object1, back);
        Assert.All(back, b => Assert.Equal(0, b));
    }

    [Fact]
    public void Pool_OnRadosStore_SurvivesReopenAndSecondServerIsRefused()
    {
        var location = cluster.Location();
        using var t = new TempPool(capacityBytes: Capacity, options: new PoolOptions { FirstStorePath = location });
        var info = t.Pool.GetInfo();
        Assert.Equal(StoreKind.Rados, info.Stores[0].Kind);
        Assert.StartsWith("rados:tidemark/", info.Stores[0].Path, StringComparison.Ordinal);
        var volume = t.Pool.CreateVolume("v", 16L << 20);
        var data = Bytes.Pattern(1 << 20, 4);
        volume.Write(4096, data, forceUnitAccess: false);
        volume.Flush();
        t.Pool.CreateSnapshot("v", "s1");
        volume.Write(4096, Bytes.Pattern(4096, 5), forceUnitAccess: false);
        volume.Flush();

        // Another pool (another server) naming the same RADOS store is refused while this one holds it.
        var other = Path.Combine(Path.GetTempPath(), "tidemark-test-" + Guid.NewGuid().ToString("N")[..12]);
        try
        {
            var ex = Assert.Throws<StorageException>(() => Pool.Create(other, new PoolOptions { FirstStorePath = location, FirstStoreCapacityBytes = Capacity }));
            Assert.Equal(StorageError.Busy, ex.Error);
        }
        finally
        {
            if (Directory.Exists(other))
            {
                Directory.Delete(other, recursive: true);
            }
        }

        t.Reopen();
        var reopened = t.Pool.GetVolume("v");
        Assert.Equal(Bytes.Pattern(4096, 5), Bytes.Read(reopened, 4096, 4096));
        Assert.Equal(data, Bytes.Read(t.Pool.OpenSnapshot("v@s1"), 4096, data.Length));
        t.AssertVerifyClean();
    }

    [Fact]
    public void AddStore_RadosPrefixHoldingData_RefusedWithRadosAdvice()
    {
        var prefix = "n" + Guid.NewGuid().ToString("N")[..10];
        var location = cluster.Location(prefix);
        using (var earlier = RadosBackingStore.Open(location, Capacity))
        {
            earlier.Write(0, Bytes.Pattern(4096, 9));
            earlier.Flush();
        }

        using var t = new TempPool(capacityBytes: Capacity);
        var ex = Assert.Throws<StorageException>(() => t.Pool.AddStore(location, Capacity));
        Assert.Equal(StorageError.InvalidArgument, ex.Error);
        Assert.Contains($"rados -p {CephCluster.PoolName} ls | grep '^{prefix}\\.'", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"{prefix}.data.0000000000000000", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("wipefs", ex.Message, StringComparison.Ordinal);
        Assert.Single(t.Pool.GetInfo().Stores);
    }

    [Fact]
    public void AddStore_RadosLocationWithoutCapacity_SizedFromTheCluster()
    {
        using var t = new TempPool(capacityBytes: Capacity);
        t.Pool.AddStore(cluster.Location(), 0);
        var store = t.Pool.GetInfo().Stores[1];
        Assert.Equal(StoreKind.Rados, store.Kind);
        Assert.True(store.CapacityBytes > Capacity, $"capacity {store.CapacityBytes} should be the RADOS pool's free space (GBs)");
    }

    [Fact]
    public void PreferredConcurrency_FilePoolGainsARadosStore_VolumesViewsAndSnapshotsPreferManyReads()
    {
        using var t = new TempPool(capacityBytes: 64L << 20);
        IBlockDevice volume = t.Pool.CreateVolume("v", 16L << 20);
        t.Pool.CreateSnapshot("v", "s");
        IBlockDevice view = t.Pool.CreateView("v@s", "w");
        IBlockDevice snapshot = t.Pool.OpenSnapshot("v@s");

        // Local stores only: reads are inline page-cache copies (issue 18).
        Assert.Equal(new[] { 1, 1, 1 }, new[] { volume.PreferredConcurrency, view.PreferredConcurrency, snapshot.PreferredConcurrency });

        // A read may land on the RADOS store now: many in flight share its round trips (issue 22).
        t.Pool.AddStore(cluster.Location(), Capacity);
        Assert.Equal(new[] { 32, 32, 32 }, new[] { volume.PreferredConcurrency, view.PreferredConcurrency, snapshot.PreferredConcurrency });
    }

    [Fact]
    public void Open_UnreachableCluster_IoErrorWithinTheTimeout()
    {
        var conf = Path.Combine(cluster.Directory, "dead.conf");
        File.WriteAllText(conf, $"[global]\nmon_host = 127.0.0.1:1\nkeyring = {cluster.Directory}/keyring\n");
        var ex = Assert.Throws<StorageException>(() => RadosBackingStore.Open($"rados:{CephCluster.PoolName}?conf={conf}&timeout=2", Capacity));
        Assert.Equal(StorageError.IoError, ex.Error);
        Assert.Contains("connecting to the Ceph cluster", ex.Message, StringComparison.Ordinal);
    }

    [Property(MaxTest = 6, EndSize = 60)]
    public Property RandomOperations_OnRados_EngineMatchesModel() =>
        Prop.ForAll(
            ModelTests.OpGen.ListOf().ToArbitrary(),
            ops => new ModelTests.Runner(ModelTests.TinyCache, o => o with { FirstStorePath = cluster.Location() }).Run(ops));
}
