using Tidemark.TestKit;

namespace Tidemark.Engine.Tests;

/// <summary>
/// The OSD dies under a pool on RADOS: I/O fails with an I/O error within the configured timeout
/// (no hang), and once the OSD is back every acknowledged write is there. Its own cluster, since it
/// kills the OSD.
/// </summary>
public class RadosOsdFailureTests(CephCluster cluster) : IClassFixture<CephCluster>
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

        // On a loaded machine the OSD may stay away longer than the lease; the old handle then refuses
        // to commit (it may no longer own the store). Either way a reopen has every acknowledged write.
        try
        {
            t.Pool.Dispose();
        }
        catch (StorageException ex) when (ex.Message.Contains("lease", StringComparison.Ordinal) || ex.Message.Contains("lost its lock", StringComparison.Ordinal))
        {
        }

        using var pool = Pool.Open(t.Directory, t.Options);
        var reopened = pool.GetVolume("v");
        foreach (var (offset, data) in acknowledged)
        {
            Assert.Equal(data, Bytes.Read(reopened, offset, 4096));
        }

        var report = pool.Verify();
        Assert.True(report.IsClean, string.Join("\n", report.Problems));
    }
}
