using System.Buffers.Binary;
using System.IO.Hashing;
using Tidemark.Engine;
using Tidemark.Replication;

namespace Tidemark.Fuzz;

/// <summary>
/// The snapshot stream reader (docs/STREAM-FORMAT.md) against a real pool: whatever a stream file or
/// a partner sends, <see cref="SnapshotStreamReader.Import"/> either applies it or refuses it with a
/// <see cref="StorageException"/> / <see cref="StreamImportException"/>, and leaves the pool as it
/// was. One pool per process (on /dev/shm when there is one), holding volume "source" with snapshot
/// "monday", the base of the incremental seed.
/// </summary>
public static class StreamTarget
{
    private const string Source = "source";
    private const string Fresh = "fresh";
    private static readonly Lock Gate = new();
    private static readonly Lazy<(Pool Pool, IReadOnlyList<byte[]> Seeds)> State = new(Create);

    public static IReadOnlyList<byte[]> Seeds => State.Value.Seeds;

    /// <summary>
    /// Applies the input twice, as a new volume (a full stream's path) and onto "source" (an
    /// incremental stream's path), after sealing the header checksum again so mutations reach the
    /// header's fields instead of stopping at its checksum. Returns how many imports succeeded.
    /// </summary>
    public static int Run(byte[] input)
    {
        var (pool, _) = State.Value;
        var sealedInput = Reseal(input);
        var applied = 0;
        lock (Gate)
        {
            foreach (var volume in new[] { Fresh, Source })
            {
                try
                {
                    SnapshotStreamReader.Import(pool, new MemoryStream(sealedInput, writable: false), new StreamImportOptions { Volume = volume });
                    applied++;
                }
                catch (Exception ex) when (ex is StorageException or StreamImportException)
                {
                    // A refusal is the expected answer to a damaged stream.
                }
                finally
                {
                    Restore(pool);
                }
            }
        }

        return applied;
    }

    /// <summary>Brings the pool back to "source@monday" and nothing else, and checks that it is.</summary>
    private static void Restore(Pool pool)
    {
        if (pool.TryGetVolume(Fresh, out _))
        {
            pool.DeleteVolume(Fresh);
        }

        var snapshots = pool.ListSnapshots(Source);
        if (snapshots.Count > 1 || pool.Diff(Source, "monday", null).Count > 0)
        {
            pool.Rollback(Source, "monday", keepCurrentState: false);
            foreach (var extra in pool.ListSnapshots(Source).Where(s => s.Name != "monday"))
            {
                pool.DeleteSnapshot(extra.Address);
            }
        }

        if (pool.Volumes.Count != 1 || pool.ListSnapshots(Source) is not [{ Name: "monday" }])
        {
            throw new InvalidOperationException("an import left the pool changed: " + string.Join(", ", pool.Volumes.Select(v => v.Name)));
        }
    }

    /// <summary>Rewrites the header checksum when the input frames a header (16 fixed bytes, JSON, xxHash64).</summary>
    private static byte[] Reseal(byte[] input)
    {
        if (input.Length < 16)
        {
            return input;
        }

        var jsonLength = BinaryPrimitives.ReadInt32LittleEndian(input.AsSpan(12));
        if (jsonLength <= 0 || jsonLength > input.Length - 16 - 8)
        {
            return input;
        }

        var copy = (byte[])input.Clone();
        var hash = new XxHash64();
        hash.Append(copy.AsSpan(0, 16 + jsonLength));
        BinaryPrimitives.WriteUInt64LittleEndian(copy.AsSpan(16 + jsonLength), hash.GetCurrentHashAsUInt64());
        return copy;
    }

    private static (Pool, IReadOnlyList<byte[]>) Create()
    {
        var root = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        var directory = Path.Combine(root, $"tidemark-fuzz-stream-{Environment.ProcessId}");
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }

        var pool = Pool.Create(directory, new PoolOptions { FirstStoreCapacityBytes = 64L << 20 });
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            pool.Dispose();
            Directory.Delete(directory, recursive: true);
        };

        // The seeds come from this pool: a full stream of source@monday, and the changes to tuesday.
        var volume = pool.CreateVolume(Source, 1 << 20);
        var data = new byte[64 * 1024];
        new Random(3).NextBytes(data);
        volume.Write(0, data, false);
        volume.Write(512 * 1024, new byte[8192], false);
        pool.CreateSnapshot(Source, "monday");
        new Random(4).NextBytes(data);
        volume.Write(128 * 1024, data, false);
        volume.Unmap(0, 4096);
        pool.CreateSnapshot(Source, "tuesday");
        var full = new MemoryStream();
        SnapshotStreamWriter.Write(pool, "source@monday", null, full);
        var raw = new MemoryStream();
        SnapshotStreamWriter.Write(pool, "source@monday", null, raw, new StreamExportOptions { CompressionLevel = 0 });
        var incremental = new MemoryStream();
        SnapshotStreamWriter.Write(pool, "source@tuesday", "source@monday", incremental);
        pool.Rollback(Source, "monday", keepCurrentState: false);
        pool.DeleteSnapshot("source@tuesday");
        return (pool, [incremental.ToArray(), full.ToArray(), raw.ToArray()]);
    }
}
