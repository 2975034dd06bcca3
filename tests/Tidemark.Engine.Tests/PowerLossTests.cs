using Tidemark.Engine;
using Tidemark.Engine.CrashWorker;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Power loss, simulated in-process: the data store drops, keeps or tears every write not yet
/// flushed, the metadata keeps what was committed; the reopened pool must pass the same checks as
/// after kill -9.
/// </summary>
public class PowerLossTests
{
    private static int Rounds => Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? 200 : 12;

    [Fact]
    public void PowerLossAtRandomPoints_ReopenHasEveryDurableWriteAndSnapshot()
    {
        var rng = new Random(4242);
        for (var round = 0; round < Rounds; round++)
        {
            RunRound(rng.Next(), rng.Next(40, 900), new Random(rng.Next()));
        }
    }

    private static void RunRound(int seed, int crashAt, Random faults)
    {
        FaultyBackingStore? store = null;
        var options = new PoolOptions
        {
            FirstStoreCapacityBytes = 256L << 20,
            MaxDirtyPages = 8,
            StoreFactory = (path, capacity, create) => store ??= new FaultyBackingStore(path, capacity),
        };
        var root = System.IO.Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        var dir = Path.Combine(root, "tidemark-powerloss-" + Guid.NewGuid().ToString("N")[..10]);
        try
        {
            var pool = Pool.Create(dir, options);
            var volume = pool.CreateVolume("crash", CrashWorkload.VolumeBytes);
            var durable = 0;
            var acknowledged = new Dictionary<string, int>();
            var mayBeGone = new HashSet<string>();
            var snapshots = new Queue<string>();
            var flushes = 0;
            for (var i = 0; i < crashAt; i++)
            {
                var step = CrashWorkload.Get(seed, i);
                if (step.Unmap)
                {
                    volume.Unmap(step.Offset, step.Length);
                }
                else
                {
                    volume.Write(step.Offset, CrashWorkload.Data(step), forceUnitAccess: false);
                }

                if ((i + 1) % CrashWorkload.FlushEvery != 0)
                {
                    continue;
                }

                volume.Flush();
                durable = i + 1;
                if (++flushes % CrashWorkload.SnapshotEveryFlushes == 0)
                {
                    var name = $"c{i + 1}";
                    pool.CreateSnapshot("crash", name);
                    acknowledged[name] = i + 1;
                    snapshots.Enqueue(name);
                    if (snapshots.Count > 3)
                    {
                        var old = snapshots.Dequeue();
                        pool.DeleteSnapshot($"crash@{old}");
                        acknowledged.Remove(old);
                    }
                }
            }

            pool.SimulateCrash();
            store!.PowerLoss(faults);
            using var reopened = Pool.Open(dir, options);
            CrashTests.Check(reopened, seed, durable, crashAt, acknowledged, mayBeGone);
        }
        finally
        {
            if (System.IO.Directory.Exists(dir))
            {
                System.IO.Directory.Delete(dir, recursive: true);
            }
        }
    }
}
