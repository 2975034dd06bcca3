using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

public class SnapshotIdTests
{
    [Fact]
    public void Ids_AreStableAcrossReopen_GivenIdsAreKept_AndDuplicatesRefused()
    {
        using var t = new TempPool();
        t.Pool.CreateVolume("vol", 16L << 20);
        var a = t.Pool.CreateSnapshot("vol", "a");
        var given = Guid.NewGuid();
        var b = t.Pool.CreateSnapshot("vol", "b", given);

        var duplicate = Assert.Throws<StorageException>(() => t.Pool.CreateSnapshot("vol", "c", given));
        t.Reopen();

        Assert.NotEqual(Guid.Empty, a.Id);
        Assert.Equal(given, b.Id);
        Assert.Equal(StorageError.AlreadyExists, duplicate.Error);
        Assert.Equal(a.Id, t.Pool.GetSnapshot("vol@a").Id);
        Assert.Equal("b", t.Pool.FindSnapshotById("vol", given)?.Name);
        Assert.Null(t.Pool.FindSnapshotById("vol", Guid.NewGuid()));
    }

    [Fact]
    public void SnapshotVolumesTogether_KeepsGivenNamesAndIds_SurvivesReopen_AndRefusesDuplicates()
    {
        using var t = new TempPool();
        var a = t.Pool.CreateVolume("a", 16L << 20);
        var b = t.Pool.CreateVolume("b", 16L << 20);
        a.Write(0, Bytes.Pattern(4096, 1), false);
        b.Write(0, Bytes.Pattern(4096, 2), false);
        var (idA, idB) = (Guid.NewGuid(), Guid.NewGuid());

        var cut = t.Pool.SnapshotVolumesTogether([("a", "s1", idA), ("b", "s1", idB)], "mail/s1");
        a.Write(0, Bytes.Pattern(4096, 3), false);
        var twice = Assert.Throws<StorageException>(() => t.Pool.SnapshotVolumesTogether([("a", "s2", idA), ("b", "s2", Guid.NewGuid())], "mail/s2"));
        var sameVolume = Assert.Throws<StorageException>(() => t.Pool.SnapshotVolumesTogether([("a", "s3", Guid.NewGuid()), ("a", "s4", Guid.NewGuid())], "x"));
        t.Reopen();

        Assert.Equal(["a", "b"], cut.Select(s => s.Volume).Order());
        Assert.Equal(StorageError.AlreadyExists, twice.Error);
        Assert.Equal(StorageError.InvalidArgument, sameVolume.Error);
        Assert.Equal("s1", t.Pool.FindSnapshotById("a", idA)?.Name);
        Assert.Equal("s1", t.Pool.FindSnapshotById("b", idB)?.Name);
        Assert.Equal(["s1"], t.Pool.ListSnapshots("a").Select(s => s.Name)); // the refused cuts left nothing
        var image = new byte[4096];
        t.Pool.OpenSnapshot("a@s1").Read(0, image);
        Assert.Equal(Bytes.Pattern(4096, 1), image);
    }

    [Fact]
    public void RollbackDiscardingCurrentState_LeavesNoPreRollbackSnapshot_AndFreesWhatWasWritten()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var original = Bytes.Pattern(1 << 20, 1);
        v.Write(0, original, false);
        t.Pool.CreateSnapshot("vol", "base");
        var usedAtBase = t.Pool.GetInfo().UsedBytes;
        v.Write(0, Bytes.Pattern(1 << 20, 2), false);
        v.Write(4L << 20, Bytes.Pattern(2 << 20, 3), false);

        var kept = t.Pool.Rollback("vol", "base", keepCurrentState: false);
        v = t.Pool.GetVolume("vol");

        Assert.Null(kept);
        Assert.Equal(["base"], t.Pool.ListSnapshots("vol").Select(s => s.Name));
        Assert.Equal(original, Bytes.Read(v, 0, original.Length));
        Assert.Equal(new byte[2 << 20], Bytes.Read(v, 4L << 20, 2 << 20));
        Assert.Equal(usedAtBase, t.Pool.GetInfo().UsedBytes);
        t.AssertVerifyClean();
        t.Reopen();
        Assert.Equal(original, Bytes.Read(t.Pool.GetVolume("vol"), 0, original.Length));
        t.AssertVerifyClean();
    }
}
