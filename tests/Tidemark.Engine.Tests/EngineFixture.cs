using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

/// <summary>A pool in a fresh temporary directory, removed afterwards. Uses /dev/shm when present for speed.</summary>
public sealed class TempPool : IDisposable
{
    public TempPool(long capacityBytes = 256L << 20, PoolOptions? options = null, bool onDisk = false)
    {
        var root = !onDisk && System.IO.Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        Directory = Path.Combine(root, "tidemark-test-" + Guid.NewGuid().ToString("N")[..12]);
        Options = (options ?? new PoolOptions()) with { FirstStoreCapacityBytes = capacityBytes };
        Pool = Pool.Create(Directory, Options);
    }

    public string Directory { get; }

    public PoolOptions Options { get; }

    public Pool Pool { get; private set; }

    public Pool Reopen()
    {
        Pool.Dispose();
        Pool = Pool.Open(Directory, Options);
        return Pool;
    }

    public void AssertVerifyClean()
    {
        var report = Pool.Verify();
        Assert.True(report.IsClean, string.Join("\n", report.Problems));
    }

    public void Dispose()
    {
        try
        {
            Pool.Dispose();
        }
        catch (ObjectDisposedException)
        {
        }
        catch (StorageException)
        {
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal static class Bytes
{
    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static byte[] Read(IBlockDevice device, long offset, int length)
    {
        var data = new byte[length];
        device.Read(offset, data);
        return data;
    }
}
