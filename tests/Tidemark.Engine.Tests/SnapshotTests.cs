using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

public class SnapshotTests
{
    [Fact]
    public void Snapshot_OverwriteAfter_SnapshotKeepsOldData()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var a = Bytes.Pattern(65536, 1);
        var b = Bytes.Pattern(65536, 2);
        v.Write(0, a, false);
        var s = t.Pool.CreateSnapshot("vol", "monday");
        Assert.Equal("vol@monday", s.Address);
        v.Write(0, b, false);
        var snap = t.Pool.OpenSnapshot("vol@monday");
        Assert.True(snap.IsReadOnly);
        Assert.Equal(a, Bytes.Read(snap, 0, a.Length));
        Assert.Equal(b, Bytes.Read(v, 0, b.Length));
        Assert.Equal(StorageError.ReadOnly, Assert.Throws<StorageException>(() => snap.Write(0, b, false)).Error);
        t.Reopen();
        Assert.Equal(a, Bytes.Read(t.Pool.OpenSnapshot("vol@monday"), 0, a.Length));
        Assert.Equal(b, Bytes.Read(t.Pool.GetVolume("vol"), 0, b.Length));
        t.AssertVerifyClean();
    }

    [Fact]
    public void Write_PartlyRewrittenSinceTheSnapshot_IsRedirectedWhole_AsOneStoreWrite_AndFreesWhatItLeaves()
    {
        FaultyBackingStore? store = null;
        using var t = new TempPool(64L << 20, new PoolOptions { StoreFactory = (path, capacity, _) => store ??= new FaultyBackingStore(path, capacity) });
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        v.Write(0, Bytes.Pattern(1 << 20, 1), false);
        t.Pool.CreateSnapshot("vol", "monday");

        // Blocks 10 and 200 rewritten since the snapshot: the live image owns them, the rest is shared.
        v.Write(10 * 4096, Bytes.Pattern(4096, 2), false);
        v.Write(200 * 4096, Bytes.Pattern(4096, 3), false);
        t.Pool.Flush();

        // In place over the two owned blocks, this was five store writes (fresh, old, fresh, old, fresh).
        var writes = store!.Writes;
        var data = Bytes.Pattern(1 << 20, 4);
        v.Write(0, data, false);
        Assert.Equal(1, store.Writes - writes);

        t.Pool.Flush();
        Assert.Equal(data, Bytes.Read(v, 0, data.Length));
        Assert.Equal(Bytes.Pattern(1 << 20, 1), Bytes.Read(t.Pool.OpenSnapshot("vol@monday"), 0, 1 << 20));
        t.Reopen();
        Assert.Equal(data, Bytes.Read(t.Pool.GetVolume("vol"), 0, data.Length));
        t.AssertVerifyClean(); // the two blocks left behind were freed, not leaked
    }

    [Fact]
    public void DeleteSnapshot_AnyOrder_FreesUniqueSpaceAndKeepsOthers()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var images = new List<byte[]>();
        for (var i = 0; i < 5; i++)
        {
            var data = Bytes.Pattern(1 << 20, i);
            v.Write(0, data, false);
            images.Add(data);
            t.Pool.CreateSnapshot("vol", $"s{i}");
        }

        v.Write(0, Bytes.Pattern(1 << 20, 99), false);
        v.Flush();
        Assert.Equal(6L << 20, t.Pool.GetInfo().UsedBytes);
        Assert.Equal(1L << 20, t.Pool.GetSnapshotUsage("vol@s2").UniqueBytes);

        foreach (var i in new[] { 2, 0, 4 })
        {
            t.Pool.DeleteSnapshot($"vol@s{i}");
            t.AssertVerifyClean();
        }

        Assert.Equal(3L << 20, t.Pool.GetInfo().UsedBytes);
        Assert.Equal(images[1], Bytes.Read(t.Pool.OpenSnapshot("vol@s1"), 0, 1 << 20));
        Assert.Equal(images[3], Bytes.Read(t.Pool.OpenSnapshot("vol@s3"), 0, 1 << 20));
        Assert.Equal(StorageError.NotFound, Assert.Throws<StorageException>(() => t.Pool.OpenSnapshot("vol@s2")).Error);
        t.Reopen();
        Assert.Equal(images[3], Bytes.Read(t.Pool.OpenSnapshot("vol@s3"), 0, 1 << 20));
        t.AssertVerifyClean();
    }

    [Fact]
    public void SnapshotUsage_SharedAndUnique_Reported()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        v.Write(0, Bytes.Pattern(1 << 20, 1), false);
        t.Pool.CreateSnapshot("vol", "s1");
        v.Write(0, Bytes.Pattern(256 * 1024, 2), false);
        var usage = t.Pool.GetSnapshotUsage("vol@s1");
        Assert.Equal(256L * 1024, usage.UniqueBytes);
        Assert.Equal(768L * 1024, usage.SharedBytes);
    }

    [Fact]
    public void Hold_Indefinite_BlocksDeleteUntilReleased()
    {
        using var t = new TempPool();
        t.Pool.CreateVolume("vol", 1L << 20);
        t.Pool.CreateSnapshot("vol", "keep");
        t.Pool.HoldSnapshot("vol@keep", until: null, reason: "legal");
        Assert.Equal(StorageError.Held, Assert.Throws<StorageException>(() => t.Pool.DeleteSnapshot("vol@keep")).Error);
        Assert.Equal(StorageError.Held, Assert.Throws<StorageException>(() => t.Pool.DeleteVolume("vol")).Error);
        t.Reopen();
        Assert.Equal(StorageError.Held, Assert.Throws<StorageException>(() => t.Pool.DeleteSnapshot("vol@keep")).Error);
        t.Pool.ReleaseHold("vol@keep");
        t.Pool.DeleteSnapshot("vol@keep");
    }

    [Fact]
    public void Hold_Dated_CannotBeReleasedOrShortenedBeforeItsDate()
    {
        var now = new DateTimeOffset(2026, 11, 24, 12, 0, 0, TimeSpan.Zero);
        using var t = new TempPool(options: new PoolOptions { Clock = () => now });
        t.Pool.CreateVolume("vol", 1L << 20);
        t.Pool.CreateSnapshot("vol", "s");
        t.Pool.HoldSnapshot("vol@s", now.AddDays(30));
        t.Pool.HoldSnapshot("vol@s", now.AddDays(1));
        Assert.Equal(now.AddDays(30), t.Pool.GetSnapshot("vol@s").HoldUntil);
        t.Pool.ReleaseHold("vol@s");
        Assert.Equal(StorageError.Held, Assert.Throws<StorageException>(() => t.Pool.DeleteSnapshot("vol@s")).Error);
        now = now.AddDays(31);
        t.Pool.DeleteSnapshot("vol@s");
    }

    [Fact]
    public void Snapshot_NameRules_TypedErrors()
    {
        using var t = new TempPool();
        t.Pool.CreateVolume("vol", 1L << 20);
        t.Pool.CreateSnapshot("vol", "a");
        Assert.Equal(StorageError.AlreadyExists, Assert.Throws<StorageException>(() => t.Pool.CreateSnapshot("vol", "a")).Error);
        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => t.Pool.CreateSnapshot("vol", "a b")).Error);
        Assert.Equal(StorageError.NotFound, Assert.Throws<StorageException>(() => t.Pool.CreateSnapshot("nope", "a")).Error);
        var auto = t.Pool.CreateSnapshot("vol");
        Assert.StartsWith("snap-", auto.Name);
        Assert.NotEqual(auto.Name, t.Pool.CreateSnapshot("vol").Name);
    }

    [Fact]
    public void View_WritesIndependentOfSource_BothDirections()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 4L << 20);
        var a = Bytes.Pattern(1 << 20, 1);
        v.Write(0, a, false);
        t.Pool.CreateSnapshot("vol", "s");
        var view = t.Pool.CreateView("vol@s", "restore");
        Assert.Equal(VolumeKind.View, view.Kind);
        Assert.Equal("vol@s", view.Origin);
        Assert.Equal(a, Bytes.Read(view, 0, a.Length));
        var b = Bytes.Pattern(4096, 2);
        view.Write(8192, b, false);
        v.Write(0, Bytes.Pattern(1 << 20, 3), false);
        var expected = (byte[])a.Clone();
        b.CopyTo(expected, 8192);
        Assert.Equal(expected, Bytes.Read(view, 0, a.Length));
        view.Unmap(0, 4096);
        Assert.All(Bytes.Read(view, 0, 4096), x => Assert.Equal(0, x));
        Assert.Equal(a, Bytes.Read(t.Pool.OpenSnapshot("vol@s"), 0, a.Length));
        Assert.Equal(StorageError.HasDependents, Assert.Throws<StorageException>(() => t.Pool.DeleteSnapshot("vol@s")).Error);
        Assert.Equal(StorageError.HasDependents, Assert.Throws<StorageException>(() => t.Pool.DeleteVolume("vol")).Error);
        t.Reopen();
        expected.AsSpan(0, 4096).Clear();
        Assert.Equal(expected, Bytes.Read(t.Pool.GetVolume("restore"), 0, a.Length));
        t.Pool.DeleteVolume("restore");
        t.Pool.DeleteSnapshot("vol@s");
        t.AssertVerifyClean();
    }

    [Fact]
    public void PromotedView_OutlivesItsSourceVolume()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 4L << 20);
        var a = Bytes.Pattern(1 << 20, 1);
        v.Write(0, a, false);
        t.Pool.CreateSnapshot("vol", "s");
        v.Write(0, Bytes.Pattern(1 << 20, 2), false);
        t.Pool.CreateView("vol@s", "clone");
        t.Pool.PromoteView("clone");
        t.Pool.DeleteVolume("vol");
        t.AssertVerifyClean();
        Assert.Equal(1L << 20, t.Pool.GetInfo().UsedBytes);
        Assert.Equal(a, Bytes.Read(t.Pool.GetVolume("clone"), 0, a.Length));
        t.Reopen();
        Assert.Equal(a, Bytes.Read(t.Pool.GetVolume("clone"), 0, a.Length));
        t.Pool.DeleteVolume("clone");
        Assert.Equal(0, t.Pool.GetInfo().UsedBytes);
        t.AssertVerifyClean();
    }

    [Fact]
    public void Rollback_KeepsNewerSnapshotsAndThePreRollbackState()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 4L << 20);
        var good = Bytes.Pattern(1 << 20, 1);
        var later = Bytes.Pattern(1 << 20, 2);
        var bad = Bytes.Pattern(1 << 20, 3);
        v.Write(0, good, false);
        t.Pool.CreateSnapshot("vol", "good");
        v.Write(0, later, false);
        t.Pool.CreateSnapshot("vol", "later");
        v.Write(0, bad, false);
        var kept = t.Pool.Rollback("vol", "good");
        Assert.NotNull(kept);
        Assert.Equal(good, Bytes.Read(v, 0, good.Length));
        Assert.Equal(later, Bytes.Read(t.Pool.OpenSnapshot("vol@later"), 0, later.Length));
        Assert.Equal(bad, Bytes.Read(t.Pool.OpenSnapshot(kept!.Address), 0, bad.Length));
        var after = Bytes.Pattern(4096, 4);
        v.Write(0, after, false);
        Assert.Equal(good, Bytes.Read(t.Pool.OpenSnapshot("vol@good"), 0, good.Length));
        t.Reopen();
        v = t.Pool.GetVolume("vol");
        Assert.Equal(after, Bytes.Read(v, 0, 4096));
        Assert.Equal(good.AsSpan(4096).ToArray(), Bytes.Read(v, 4096, good.Length - 4096));
        Assert.Equal(3, t.Pool.ListSnapshots("vol").Count);
        t.Pool.Rollback("vol", "later");
        Assert.Equal(later, Bytes.Read(v, 0, later.Length));
        foreach (var s in t.Pool.ListSnapshots("vol"))
        {
            t.Pool.DeleteSnapshot(s.Address);
            t.AssertVerifyClean();
        }

        Assert.Equal(later, Bytes.Read(v, 0, later.Length));
        t.Pool.DeleteVolume("vol");
        Assert.Equal(0, t.Pool.GetInfo().UsedBytes);
        t.AssertVerifyClean();
    }

    [Fact]
    public void GroupSnapshot_AllMembersCutTogether()
    {
        using var t = new TempPool();
        var data = t.Pool.CreateVolume("data", 1L << 20);
        var log = t.Pool.CreateVolume("log", 1L << 20);
        data.Write(0, Bytes.Pattern(4096, 1), false);
        log.Write(0, Bytes.Pattern(4096, 2), false);
        t.Pool.CreateGroup("mail", ["data", "log"]);
        var snaps = t.Pool.SnapshotGroup("mail", "nightly");
        Assert.Equal(2, snaps.Count);
        Assert.All(snaps, s => Assert.Equal("mail/nightly", s.GroupSnapshot));
        data.Write(0, Bytes.Pattern(4096, 3), false);
        Assert.Equal(Bytes.Pattern(4096, 1), Bytes.Read(t.Pool.OpenSnapshot("data@nightly"), 0, 4096));
        Assert.Equal(Bytes.Pattern(4096, 2), Bytes.Read(t.Pool.OpenSnapshot("log@nightly"), 0, 4096));
        Assert.Single(t.Reopen().Groups);
    }

    [Fact]
    public async Task GroupSnapshot_UnderConcurrentWrites_NoMemberHasAWriteAnotherLacks()
    {
        using var t = new TempPool();
        var a = t.Pool.CreateVolume("a", 1L << 20);
        var b = t.Pool.CreateVolume("b", 1L << 20);
        t.Pool.CreateGroup("g", ["a", "b"]);
        using var stop = new CancellationTokenSource();
        // The writer writes counter n to a, then to b: in any consistent cut, b's counter <= a's <= b's + 1.
        var writer = Task.Run(() =>
        {
            var buffer = new byte[512];
            for (long n = 1; !stop.IsCancellationRequested; n++)
            {
                BitConverter.TryWriteBytes(buffer, n);
                a.Write(0, buffer, false);
                b.Write(0, buffer, false);
            }
        });
        for (var i = 0; i < 50; i++)
        {
            t.Pool.SnapshotGroup("g", $"cut{i}");
        }

        stop.Cancel();
        await writer;
        for (var i = 0; i < 50; i++)
        {
            var na = BitConverter.ToInt64(Bytes.Read(t.Pool.OpenSnapshot($"a@cut{i}"), 0, 512));
            var nb = BitConverter.ToInt64(Bytes.Read(t.Pool.OpenSnapshot($"b@cut{i}"), 0, 512));
            Assert.InRange(na - nb, 0, 1);
        }
    }

    [Fact]
    public void Diff_ReportsExactlyTheChangedRanges()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 64L << 20);
        v.Write(0, Bytes.Pattern(8 << 20, 1), false);
        t.Pool.CreateSnapshot("vol", "a");
        v.Write(4096, Bytes.Pattern(8192, 2), false);
        v.Write(5L << 20, Bytes.Pattern(512, 3), false);
        t.Pool.CreateSnapshot("vol", "b");
        v.Unmap(40L << 20, 1 << 20);
        v.Write(60L << 20, Bytes.Pattern(4096, 4), false);
        Assert.Equal(
            [new ChangedRange(4096, 8192), new ChangedRange(5L << 20, 4096)],
            t.Pool.Diff("vol", "a", "b"));
        Assert.Equal(
            [new ChangedRange(4096, 8192), new ChangedRange(5L << 20, 4096), new ChangedRange(60L << 20, 4096)],
            t.Pool.Diff("vol", "a", null));
        Assert.Equal([new ChangedRange(60L << 20, 4096)], t.Pool.Diff("vol", "b", null));
        Assert.Empty(t.Pool.Diff("vol", "b", "b"));
    }

    [Fact]
    public void Diff_AcrossRollback_IncludesBothSides()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 4L << 20);
        t.Pool.CreateSnapshot("vol", "base");
        v.Write(0, Bytes.Pattern(4096, 1), false);
        t.Pool.CreateSnapshot("vol", "x");
        t.Pool.Rollback("vol", "base");
        v.Write(8192, Bytes.Pattern(4096, 2), false);
        Assert.Equal([new ChangedRange(0, 4096), new ChangedRange(8192, 4096)], t.Pool.Diff("vol", "x", null));
    }

    [Fact]
    public void ManySnapshots_TwentyThousand_CreateReadDeleteStayCorrect()
    {
        using var t = new TempPool(capacityBytes: 512L << 20);
        var v = t.Pool.CreateVolume("vol", 64L << 20);
        var buffer = new byte[4096];
        const int Count = 20_000;
        for (var i = 0; i < Count; i++)
        {
            BitConverter.TryWriteBytes(buffer, i);
            v.Write((i % 4096) * 4096L, buffer, false);
            t.Pool.CreateSnapshot("vol", $"s{i}");
        }

        foreach (var i in new[] { 0, 1, 4095, 4096, 12345, Count - 1 })
        {
            var data = Bytes.Read(t.Pool.OpenSnapshot($"vol@s{i}"), (i % 4096) * 4096L, 4096);
            Assert.Equal(i, BitConverter.ToInt32(data));
        }

        Assert.Equal(Count, t.Pool.ListSnapshots("vol").Count);
        for (var i = 0; i < Count; i += 3)
        {
            t.Pool.DeleteSnapshot($"vol@s{i}");
        }

        // s12345 is gone; s12346 still sees write 12345 (kept for it) and its own write 12346.
        Assert.Equal(StorageError.NotFound, Assert.Throws<StorageException>(() => t.Pool.OpenSnapshot("vol@s12345")).Error);
        var s12346 = t.Pool.OpenSnapshot("vol@s12346");
        Assert.Equal(12345, BitConverter.ToInt32(Bytes.Read(s12346, (12345 % 4096) * 4096L, 4096)));
        Assert.Equal(12346, BitConverter.ToInt32(Bytes.Read(s12346, (12346 % 4096) * 4096L, 4096)));
        Assert.Equal(Count - (Count + 2) / 3, t.Pool.ListSnapshots("vol").Count);
        t.Reopen();
        t.AssertVerifyClean();
    }
}
