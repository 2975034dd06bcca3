using Tidemark.Engine.Storage;
using Tidemark.TestKit;

namespace Tidemark.Engine.Tests;

/// <summary>
/// The OSD dies under a pool on RADOS: I/O fails with an I/O error within the configured timeout
/// (no hang), and once the OSD is back every acknowledged write is there. It shares its cluster with
/// RadosMonitorFailureTests (<see cref="CephOutageCluster"/>).
/// </summary>
[Collection(CephOutageCluster.Collection)]
public class RadosOsdFailureTests(CephOutageCluster cluster)
{
    [Fact]
    public async Task OsdKilledUnderLoad_IoErrorWithinTimeoutAndAcknowledgedWritesSurvive()
    {
        using var t = new TempPool(capacityBytes: 256L << 20, options: new PoolOptions { FirstStorePath = cluster.Location(timeoutSeconds: 4) });
        var volume = t.Pool.CreateVolume("v", 64L << 20);
        var acknowledged = new Dictionary<long, byte[]>();
        for (var i = 0; i < 64; i++)
        {
            var data = Bytes.Pattern(4096, i);
            volume.Write(i * 65536L, data, forceUnitAccess: false);
            acknowledged[i * 65536L] = data;
        }

        volume.Flush();

        // Writers keep going while the OSD is killed: each must end with success or an I/O error, never hang.
        using var stop = new CancellationTokenSource();
        var errors = 0;
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            for (var i = 0; !stop.IsCancellationRequested; i++)
            {
                try
                {
                    volume.Write((32L << 20) + (((w * 1000) + i) % 2048 * 4096L), Bytes.Pattern(4096, w), forceUnitAccess: true);
                }
                catch (StorageException ex) when (ex.Error == StorageError.IoError)
                {
                    Interlocked.Increment(ref errors);
                    return ex.Message;
                }
            }

            return null;
        })).ToArray();
        await Task.Delay(300);
        cluster.KillOsd();

        // The timeout is 4 s; a minute is only the test's guard against a hang, not a timing claim.
        var messages = await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(writers.Length, errors);
        Assert.Contains(messages, m => m!.Contains("did not answer within 4 s", StringComparison.Ordinal) || m.Contains("lost its lock", StringComparison.Ordinal));

        cluster.StartOsd();

        // The pool serves again without a reopen, unless the OSD died between a commit's two flushes
        // (then it is offline). Either way a reopen has every acknowledged write.
        try
        {
            Retry(t.Pool.Flush);
        }
        catch (StorageException ex) when (ex.Message.Contains("offline", StringComparison.Ordinal))
        {
        }

        t.Pool.Dispose();
        using var pool = Pool.Open(t.Directory, t.Options);
        var reopened = pool.GetVolume("v");
        foreach (var (offset, data) in acknowledged)
        {
            Assert.Equal(data, Bytes.Read(reopened, offset, 4096));
        }

        var report = pool.Verify();
        Assert.True(report.IsClean, string.Join("\n", report.Problems));
    }

    [Fact]
    public void OsdKilled_ReadFailsWithIoErrorWithinTimeoutAndReadsAgainOnceBack()
    {
        using var store = RadosBackingStore.Open(cluster.Location(timeoutSeconds: 4), 64L << 20);
        var data = Bytes.Pattern(1 << 20, 7);
        var offset = RadosBackingStore.ObjectBytes - (512 << 10); // two objects
        store.Write(offset, data);
        store.Flush();
        try
        {
            cluster.KillOsd();
            var back = new byte[data.Length];
            var ex = Assert.Throws<StorageException>(() => store.Read(offset, back));
            Assert.Equal(StorageError.IoError, ex.Error);
            Assert.Contains("did not answer within 4 s", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            RestartOsd();
        }

        var again = new byte[data.Length];
        Retry(() => store.Read(offset, again));
        Assert.Equal(data, again);
    }

    [Fact]
    public async Task Flush_WaitingForAStalledWrite_DoesNotHoldBackNewWrites()
    {
        using var store = RadosBackingStore.Open(cluster.Location(timeoutSeconds: 30), 64L << 20);
        store.Write(0, Bytes.Pattern(4096, 1));
        store.Flush();
        Task flush;
        try
        {
            cluster.KillOsd();
            store.Write(4096, Bytes.Pattern(4096, 2)); // cannot complete while the OSD is down
            flush = Task.Run(store.Flush);
            await Task.Delay(300);

            // The flush waits for the stalled write; a new write must still start and return.
            store.Write(RadosBackingStore.ObjectBytes, Bytes.Pattern(4096, 3));
            Assert.False(flush.IsCompleted, "the flush returned while a write it covers could not complete");
            Assert.Equal(2, store.WritesInFlight);
        }
        finally
        {
            RestartOsd();
        }

        // Back within the 30 s timeout: the stalled writes complete and the flush succeeds.
        await flush.WaitAsync(TimeSpan.FromMinutes(2));
        store.Flush();
        var back = new byte[4096];
        store.Read(RadosBackingStore.ObjectBytes, back);
        Assert.Equal(Bytes.Pattern(4096, 3), back);
        store.Read(4096, back);
        Assert.Equal(Bytes.Pattern(4096, 2), back);
    }

    [Fact]
    public void OsdBackAfterAnOutage_PoolServesAgainWithoutReopen()
    {
        using var t = new TempPool(capacityBytes: 256L << 20, options: new PoolOptions { FirstStorePath = cluster.Location(timeoutSeconds: 4) });
        var volume = t.Pool.CreateVolume("v", 64L << 20);
        volume.Write(0, Bytes.Pattern(4096, 1), forceUnitAccess: true);
        try
        {
            cluster.KillOsd();
            volume.Write(65536, Bytes.Pattern(4096, 2), forceUnitAccess: false); // taken, like a disk's cache
            var ex = Assert.Throws<StorageException>(volume.Flush);
            Assert.Equal(StorageError.IoError, ex.Error);
            Assert.Contains("did not answer within 4 s", ex.Message, StringComparison.Ordinal);
            Assert.Contains("held and written again", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            RestartOsd();
        }

        // The same pool, not reopened: the held write lands, and flushes and new writes succeed
        // again. The client may take a few tries to learn that the OSD is back; a minute is only the
        // guard against never recovering.
        Retry(volume.Flush);
        volume.Write(131072, Bytes.Pattern(4096, 3), forceUnitAccess: true);
        t.Pool.CreateSnapshot("v", "after");
        Assert.Equal(Bytes.Pattern(4096, 2), Bytes.Read(volume, 65536, 4096));
        t.AssertVerifyClean();

        t.Reopen();
        var reopened = t.Pool.GetVolume("v");
        Assert.Equal(Bytes.Pattern(4096, 1), Bytes.Read(reopened, 0, 4096));
        Assert.Equal(Bytes.Pattern(4096, 2), Bytes.Read(reopened, 65536, 4096));
        Assert.Equal(Bytes.Pattern(4096, 3), Bytes.Read(reopened, 131072, 4096));
    }

    [Fact]
    public void LeaseRanOutDuringAnOutage_RetakenOnceBackBecauseNobodyHeldIt()
    {
        using var store = RadosBackingStore.Open(cluster.Location(timeoutSeconds: 2), 64L << 20, lease: TimeSpan.FromSeconds(3));
        store.Write(0, Bytes.Pattern(4096, 1));
        store.Flush();
        try
        {
            cluster.KillOsd();

            // Past the 3 s lease every operation is refused for the lease, not only for the timeout.
            var deadline = DateTime.UtcNow.AddMinutes(1);
            string message;
            do
            {
                message = Assert.Throws<StorageException>(() => store.Read(0, new byte[4096])).Message;
            }
            while (!message.Contains("lease", StringComparison.Ordinal) && DateTime.UtcNow < deadline);
            Assert.Contains("ran out while the Ceph cluster did not answer", message, StringComparison.Ordinal);
        }
        finally
        {
            RestartOsd();
        }

        Retry(() => store.Write(4096, Bytes.Pattern(4096, 2)));
        Retry(store.Flush);
        var back = new byte[8192];
        store.Read(0, back);
        Assert.Equal(Bytes.Pattern(4096, 1), back.AsSpan(0, 4096).ToArray());
        Assert.Equal(Bytes.Pattern(4096, 2), back.AsSpan(4096).ToArray());
    }

    /// <summary>Tries until it succeeds; see <see cref="CephOutageCluster.Retry"/>.</summary>
    private static void Retry(Action action) => CephOutageCluster.Retry(action);

    private void RestartOsd()
    {
        if (!cluster.IsOsdRunning)
        {
            cluster.StartOsd();
        }
    }
}
