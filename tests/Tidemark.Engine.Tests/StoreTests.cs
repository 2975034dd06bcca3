using System.Diagnostics;
using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

public class StoreTests
{
    [Fact]
    public void AddStore_RawBlockDevice_GrowsThePoolOnlineAndPersists()
    {
        using var t = new TempPool(capacityBytes: 1L << 20, onDisk: true);
        var backing = Path.Combine(t.Directory, "device.img");
        using (var f = File.Create(backing))
        {
            f.SetLength(64L << 20);
        }

        var loop = Run("losetup", "--find", "--show", backing);
        try
        {
            Assert.StartsWith("/dev/loop", loop, StringComparison.Ordinal);
            var volume = t.Pool.CreateVolume("vol", 32L << 20);
            volume.Write(0, Bytes.Pattern(512 * 1024, 1), false);
            Assert.Equal(StorageError.NoSpace, Assert.Throws<StorageException>(() => volume.Write(1L << 20, new byte[2 << 20], false)).Error);

            // Online: the volume keeps serving while the device joins the pool.
            t.Pool.AddStore(loop, 0);
            var store = Assert.Single(t.Pool.GetInfo().Stores, s => s.Kind == StoreKind.Device);
            Assert.Equal(64L << 20, store.CapacityBytes);
            var data = Bytes.Pattern(8 << 20, 2);
            volume.Write(1L << 20, data, false);
            volume.Flush();
            t.Reopen();
            Assert.Equal(data, Bytes.Read(t.Pool.GetVolume("vol"), 1L << 20, data.Length));
            t.AssertVerifyClean();
            Assert.Equal(StorageError.AlreadyExists, Assert.Throws<StorageException>(() => t.Pool.AddStore(loop, 0)).Error);
        }
        finally
        {
            t.Pool.Dispose();
            Run("losetup", "-d", loop);
        }
    }

    [Fact]
    public void AddStore_DeviceThatHoldsData_RefusedAndUntouched()
    {
        using var t = new TempPool(capacityBytes: 1L << 20, onDisk: true);
        var backing = Path.Combine(t.Directory, "used.img");
        var existing = Bytes.Pattern(8192, 9);
        File.WriteAllBytes(backing, existing);
        using (var f = File.OpenWrite(backing))
        {
            f.SetLength(16L << 20);
        }

        var loop = Run("losetup", "--find", "--show", backing);
        try
        {
            var ex = Assert.Throws<StorageException>(() => t.Pool.AddStore(loop, 0));
            Assert.Equal(StorageError.InvalidArgument, ex.Error);
            Assert.Contains("not empty", ex.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(t.Pool.GetInfo().Stores, s => s.Kind == StoreKind.Device);
        }
        finally
        {
            Run("losetup", "-d", loop);
        }

        Assert.Equal(existing, File.ReadAllBytes(backing).AsSpan(0, 8192).ToArray());
    }

    [Fact]
    public void GrowStore_FileStore_MoreCapacityOnline()
    {
        using var t = new TempPool(capacityBytes: 1L << 20);
        var volume = t.Pool.CreateVolume("vol", 16L << 20);
        Assert.Equal(StorageError.NoSpace, Assert.Throws<StorageException>(() => volume.Write(0, new byte[2 << 20], false)).Error);
        t.Pool.GrowStore(0, 8L << 20);
        volume.Write(0, Bytes.Pattern(2 << 20, 1), false);
        Assert.Equal(8L << 20, t.Reopen().GetInfo().Stores[0].CapacityBytes);
        t.AssertVerifyClean();
    }

    private static string Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {file}");
        if (!p.WaitForExit(30_000))
        {
            p.Kill();
            throw new TimeoutException($"{file} did not finish in 30 s");
        }

        var output = p.StandardOutput.ReadToEnd().Trim();
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({p.ExitCode}): {p.StandardError.ReadToEnd()} (loop devices need root)");
        }

        return output;
    }
}
