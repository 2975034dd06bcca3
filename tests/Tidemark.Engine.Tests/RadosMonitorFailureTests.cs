using Tidemark.Engine.Storage;
using Tidemark.TestKit;

namespace Tidemark.Engine.Tests;

/// <summary>
/// The one monitor dies under a pool on RADOS (issue 22): the OSD keeps running, so I/O may go on,
/// but whatever needs the monitor (a new map, a new connection) fails within the configured timeout;
/// no operation hangs, nothing acknowledged is lost, and once the monitor is back the same pool
/// serves again without a reopen or a server restart. Shares its cluster with RadosOsdFailureTests (<see cref="CephOutageCluster"/>).
/// </summary>
[Collection(CephOutageCluster.Collection)]
public class RadosMonitorFailureTests(CephOutageCluster cluster)
{
    private const int Writers = 4;
    private const int BlocksPerWriter = 2048;

    [Fact]
    public async Task MonitorKilledUnderLoad_IoEndsWithinTimeout_AcknowledgedWritesSurvive_PoolServesAgainWithoutReopen()
    {
        using var t = new TempPool(capacityBytes: 256L << 20, options: new PoolOptions { FirstStorePath = cluster.Location(timeoutSeconds: 4) });
        var volume = t.Pool.CreateVolume("v", 64L << 20);
        var acknowledged = new Dictionary<long, byte[]>();
        for (var i = 0; i < 16; i++)
        {
            var data = Bytes.Pattern(4096, i);
            volume.Write(i * 65536L, data, forceUnitAccess: false);
            acknowledged[i * 65536L] = data;
        }

        volume.Flush();

        // Writers keep going through the outage, each block written once: a write acknowledged
        // (FUA) must survive; one that failed is unknown, as a disk's failed write is. Every write
        // must end, with success or an I/O error: a hang is what the guard below catches.
        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            var mine = new Dictionary<long, byte[]>();
            var errors = new List<string>();
            for (var i = 0; i < BlocksPerWriter && !stop.IsCancellationRequested; i++)
            {
                var offset = (16L << 20) + (((w * BlocksPerWriter) + i) * 4096L);
                var data = Bytes.Pattern(4096, (w * BlocksPerWriter) + i + 100);
                try
                {
                    volume.Write(offset, data, forceUnitAccess: true);
                    mine[offset] = data;
                }
                catch (StorageException ex) when (ex.Error == StorageError.IoError)
                {
                    errors.Add(ex.Message);
                    Thread.Sleep(50);
                }
            }

            return (mine, errors);
        })).ToArray();

        string refused;
        (Dictionary<long, byte[]> Mine, List<string> Errors)[] results;
        try
        {
            await Task.Delay(300);
            cluster.KillMonitor();

            // What needs the monitor fails within the timeout with an error that says so: a new
            // connection to the cluster (another store opened now).
            var ex = Assert.Throws<StorageException>(() => RadosBackingStore.Open(cluster.Location(timeoutSeconds: 2), 64L << 20));
            refused = ex.Message;

            // Past the 4 s timeout under load without the monitor; a commit meanwhile may succeed
            // (data and lock go to the OSD) or fail with an I/O error, but it ends.
            try
            {
                t.Pool.CreateSnapshot("v", "during");
            }
            catch (StorageException e) when (e.Error == StorageError.IoError)
            {
            }

            await Task.Delay(TimeSpan.FromSeconds(5));
            stop.Cancel();

            // A minute is only the guard against a hang, not a timing claim.
            results = await Task.WhenAll(writers).WaitAsync(TimeSpan.FromSeconds(60));
        }
        finally
        {
            stop.Cancel();
            if (!cluster.IsMonitorRunning)
            {
                cluster.StartMonitor();
            }
        }

        Assert.Contains("no monitor answered within 2 s", refused, StringComparison.Ordinal);
        foreach (var (mine, errors) in results)
        {
            Assert.All(errors, e => Assert.Contains("did not answer within 4 s", e, StringComparison.Ordinal));
            foreach (var (offset, data) in mine)
            {
                acknowledged[offset] = data;
            }
        }

        Assert.NotEmpty(acknowledged);

        // The same pool, not reopened: flushes, writes and snapshots succeed again once the client
        // found the monitor again (a few tries; the minute is a guard against never recovering).
        Retry(volume.Flush);
        var after = Bytes.Pattern(4096, 99);
        Retry(() => volume.Write(60L << 20, after, forceUnitAccess: true));
        acknowledged[60L << 20] = after;
        Retry(() => t.Pool.CreateSnapshot("v", "after"));
        foreach (var (offset, data) in acknowledged)
        {
            Assert.Equal(data, Bytes.Read(volume, offset, 4096));
        }

        t.AssertVerifyClean();

        t.Reopen();
        var reopened = t.Pool.GetVolume("v");
        foreach (var (offset, data) in acknowledged)
        {
            Assert.Equal(data, Bytes.Read(reopened, offset, 4096));
        }
    }

    /// <summary>Tries until it succeeds; see <see cref="CephOutageCluster.Retry"/>.</summary>
    private static void Retry(Action action) => CephOutageCluster.Retry(action);
}
