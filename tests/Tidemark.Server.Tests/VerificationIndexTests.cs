using Tidemark.Engine;
using Tidemark.Engine.Control;
using Tidemark.Server.Agents;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Each volume's newest verdict, as the dashboard and the verification-failed alert see it.</summary>
public sealed class VerificationIndexTests : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 12, 6, 10, 0, 0, TimeSpan.Zero);
    private readonly TempDirectory _temp = new();
    private readonly Pool _pool;

    public VerificationIndexTests()
    {
        _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 16L << 20 });
        _pool.CreateVolume("mail", 4L << 20);
        _pool.CreateVolume("db", 4L << 20);
    }

    public void Dispose()
    {
        _pool.Dispose();
        _temp.Dispose();
    }

    private static VerificationRecord Verdict(string verdict, int minutes) =>
        new(verdict, verdict == "failed" ? "e2fsck -fn: errors" : null, ["e2fsck -fn"], 1.5, "mailhost", Start.AddMinutes(minutes));

    private Guid Store(string address, VerificationRecord record)
    {
        var id = _pool.GetSnapshot(address).Id;
        var batch = new ControlBatch();
        batch.Put(VerificationRecord.Kind, id.ToString("N"), record);
        _pool.Control.Update(batch);
        return id;
    }

    [Fact]
    public void Newest_IsBuiltFromTheStoredVerdicts_OnePerVolume_TheNewestByTime()
    {
        _pool.CreateSnapshot("mail", "a");
        _pool.CreateSnapshot("mail", "b");
        _pool.CreateSnapshot("db", "x");
        Store("mail@a", Verdict("failed", 1));
        Store("mail@b", Verdict("passed", 2));
        _pool.CreateSnapshot("mail", "c"); // not verified: does not count

        var newest = new VerificationIndex(_pool).Newest();

        var only = Assert.Single(newest);
        Assert.Equal(("mail", "b", "passed"), (only.Volume, only.Snapshot, only.Record.Verdict));
    }

    [Fact]
    public void Remember_ANewerVerdict_TakesOver_AndAnOlderStampDoesNot()
    {
        _pool.CreateSnapshot("mail", "a");
        _pool.CreateSnapshot("mail", "b");
        Store("mail@a", Verdict("passed", 1));
        var index = new VerificationIndex(_pool);
        Assert.Equal("passed", Assert.Single(index.Newest()).Record.Verdict);

        var failed = Verdict("failed", 5);
        index.Remember("mail", "b", Store("mail@b", failed), failed);
        Assert.Equal(("b", "failed"), (Assert.Single(index.Newest()).Snapshot, Assert.Single(index.Newest()).Record.Verdict));

        var stale = Verdict("passed", 3);
        index.Remember("mail", "a", _pool.GetSnapshot("mail@a").Id, stale);
        Assert.Equal("b", Assert.Single(index.Newest()).Snapshot);
    }

    [Fact]
    public void ADeletedSnapshot_HandsOverToItsVolumesNextNewestVerdict_AndADeletedVolumeDropsOut()
    {
        _pool.CreateSnapshot("mail", "a");
        _pool.CreateSnapshot("mail", "b");
        _pool.CreateSnapshot("db", "x");
        Store("mail@a", Verdict("failed", 1));
        Store("mail@b", Verdict("passed", 2));
        Store("db@x", Verdict("failed", 3));
        var index = new VerificationIndex(_pool);
        Assert.Equal(2, index.Newest().Count);

        _pool.DeleteSnapshot("mail@b");
        _pool.DeleteSnapshot("db@x");
        _pool.DeleteVolume("db");

        var only = Assert.Single(index.Newest());
        Assert.Equal(("mail", "a", "failed"), (only.Volume, only.Snapshot, only.Record.Verdict));
    }
}
