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

    [Fact]
    public void FreedBlocks_FileStore_PunchedOnceFreeSoTheHostGetsTheSpaceBack()
    {
        using var t = new TempPool(capacityBytes: 128L << 20, onDisk: true);
        var store = t.Pool.GetInfo().Stores[0].Path;
        var volume = t.Pool.CreateVolume("mail", 64L << 20);
        var monday = Bytes.Pattern(16 << 20, 4);
        volume.Write(0, monday, false);
        volume.Flush();
        t.Pool.CreateSnapshot("mail", "monday");
        volume.Write(0, Bytes.Pattern(16 << 20, 5), false);
        volume.Flush();
        var written = HostBytes(store);

        // The overwritten blocks are still the snapshot's: nothing may be punched under it.
        var snapshotImage = Bytes.Read(t.Pool.OpenSnapshot("mail@monday"), 0, monday.Length);
        t.Pool.DeleteSnapshot("mail@monday");
        var afterSnapshotDelete = HostBytes(store);
        volume.Unmap(0, 8L << 20);
        volume.Flush();
        var afterUnmap = HostBytes(store);
        var reused = t.Pool.CreateVolume("web", 16L << 20);
        var web = Bytes.Pattern(8 << 20, 6);
        reused.Write(0, web, false);
        reused.Flush();
        t.Reopen();

        Assert.Equal(monday, snapshotImage);
        Assert.True(written >= 32L << 20, $"{written} bytes on the host after 32 MiB written");
        Assert.True(afterSnapshotDelete <= written - (15L << 20), $"{afterSnapshotDelete} bytes on the host after a 16 MiB snapshot was deleted (before: {written})");
        Assert.True(afterUnmap <= afterSnapshotDelete - (7L << 20), $"{afterUnmap} bytes on the host after 8 MiB were unmapped (before: {afterSnapshotDelete})");
        Assert.Equal(web, Bytes.Read(t.Pool.GetVolume("web"), 0, web.Length));
        Assert.Equal(new byte[8 << 20], Bytes.Read(t.Pool.GetVolume("mail"), 0, 8 << 20));
        t.AssertVerifyClean();
    }

    /// <summary>Bytes the file really occupies on the host (st_blocks, in 512-byte units).</summary>
    private static long HostBytes(string path) => long.Parse(Run("stat", "-c", "%b", path), System.Globalization.CultureInfo.InvariantCulture) * 512;

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
