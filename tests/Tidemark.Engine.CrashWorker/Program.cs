using Tidemark.Engine;
using Tidemark.Engine.CrashWorker;

// Usage: crash-worker [atomic] POOL_DIR LOG_FILE SEED [STORE]   (STORE: the first store's path, e.g. a rados: location)
// With "atomic" it runs AtomicCrashWorkload instead (atomic writes only, "durable N" after each flush).
// Runs the crash workload against volume "crash" until killed. After each flush returns it appends
// "durable N" to LOG_FILE (fsync'd): every operation before N is durable. Snapshots are logged as
// "snapshot NAME N" once acknowledged, deletions as "deleting NAME" before and "deleted NAME" after.
var atomic = args.Length > 0 && args[0] == AtomicCrashWorkload.Mode;
var argv = atomic ? args[1..] : args;
if (argv.Length is not (3 or 4))
{
    Console.Error.WriteLine("usage: crash-worker [atomic] POOL_DIR LOG_FILE SEED [STORE]");
    return 2;
}

var (dir, logPath, seed) = (argv[0], argv[1], int.Parse(argv[2], System.Globalization.CultureInfo.InvariantCulture));
using var pool = Directory.Exists(Path.Combine(dir, "meta"))
    ? Pool.Open(dir)
    : Pool.Create(dir, new PoolOptions { FirstStoreCapacityBytes = 1L << 30, MaxDirtyPages = 64, FirstStorePath = argv.Length > 3 ? argv[3] : null });
using var log = new FileStream(logPath, FileMode.Append, FileAccess.Write, FileShare.Read, 1, FileOptions.WriteThrough);
void Log(string line)
{
    var bytes = System.Text.Encoding.ASCII.GetBytes(line + "\n");
    log.Write(bytes);
    log.Flush(flushToDisk: true);
}

if (atomic)
{
    AtomicCrashWorkload.Run(pool, seed, Log);
}

var volume = pool.TryGetVolume("crash", out var existing) ? existing : pool.CreateVolume("crash", CrashWorkload.VolumeBytes);

Log("started");
var snapshots = new Queue<string>();
var flushes = 0;
for (var i = 0; ; i++)
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
    Log($"durable {i + 1}");
    if (++flushes % CrashWorkload.SnapshotEveryFlushes == 0)
    {
        var name = $"c{i + 1}";
        pool.CreateSnapshot("crash", name);
        Log($"snapshot {name} {i + 1}");
        snapshots.Enqueue(name);
        if (snapshots.Count > 3)
        {
            var old = snapshots.Dequeue();
            Log($"deleting {old}");
            pool.DeleteSnapshot($"crash@{old}");
            Log($"deleted {old}");
        }
    }
}
