using System.Text;
using Tidemark.Engine.Control;

namespace Tidemark.Engine.Tests;

/// <summary>Control-plane records in the pool's metadata store: typed, versioned, atomic, durable with the engine's commits.</summary>
public sealed class ControlStoreTests
{
    private sealed record Note(string Text, int Count);

    private static readonly ControlKind<Note> Notes = new("note", 1);

    [Fact]
    public void PutGetListDelete_RoundTrip_AndSurviveReopen()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.Control.Put(Notes, "b", new Note("two", 2));
        temp.Pool.Control.Put(Notes, "a", new Note("one", 1));
        temp.Pool.Control.Put(Notes, "c", new Note("three", 3));
        temp.Pool.Control.Delete(Notes, "c");

        var pool = temp.Reopen();

        Assert.Equal(new Note("one", 1), pool.Control.Get(Notes, "a"));
        Assert.Null(pool.Control.Get(Notes, "c"));
        Assert.Equal(["a", "b"], pool.Control.List(Notes).Select(e => e.Key));
    }

    [Fact]
    public void List_OfOneKind_DoesNotSeeAKindWhoseNameExtendsIt()
    {
        using var temp = new TempPool(16L << 20);
        var longer = new ControlKind<Note>("note-archive", 1);
        temp.Pool.Control.Put(longer, "x", new Note("archived", 0));
        temp.Pool.Control.Put(Notes, "y", new Note("live", 1));

        Assert.Equal(["y"], temp.Pool.Control.List(Notes).Select(e => e.Key));
        Assert.Equal(["x"], temp.Pool.Control.List(longer).Select(e => e.Key));
    }

    [Fact]
    public void ReplaceAll_LeavesExactlyTheGivenRecords()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.Control.Put(Notes, "old", new Note("old", 0));
        temp.Pool.Control.Put(Notes, "kept", new Note("before", 0));

        temp.Pool.Control.ReplaceAll(Notes, [new("kept", new Note("after", 1)), new("new", new Note("new", 2))]);

        Assert.Equal(["kept", "new"], temp.Pool.Control.List(Notes).Select(e => e.Key));
        Assert.Equal("after", temp.Pool.Control.Get(Notes, "kept")!.Text);
    }

    [Fact]
    public void FlushWithControl_CommitsTheRecordWithTheDataItDescribes()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.CreateVolume("mail", 1L << 20);
        var data = new byte[4096];
        data.AsSpan().Fill(0xAB);
        temp.Pool.GetVolume("mail").Write(0, data, forceUnitAccess: false);

        temp.Pool.Flush(new ControlBatch().Put(Notes, "mail", new Note("written", 1)));
        temp.Pool.SimulateCrash();
        var pool = temp.Reopen();

        Assert.Equal(new Note("written", 1), pool.Control.Get(Notes, "mail"));
        var read = new byte[4096];
        pool.GetVolume("mail").Read(0, read);
        Assert.Equal(data, read);
    }

    [Fact]
    public void CreateSnapshot_WithBookkeeping_CommitsTheRecordsInTheSnapshotsOwnCommit_AndACrashKeepsBoth()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.CreateVolume("mail", 1L << 20);
        var data = new byte[4096];
        data.AsSpan().Fill(0xCD);
        temp.Pool.GetVolume("mail").Write(0, data, forceUnitAccess: false);
        SnapshotInfo? seen = null;

        var snapshot = temp.Pool.CreateSnapshot("mail", "repl-1", bookkeeping: s =>
        {
            seen = s;
            return new ControlBatch().Put(Notes, "mail", new Note($"{s.Name} {s.Id}", 1));
        });
        temp.Pool.SimulateCrash();
        var pool = temp.Reopen();

        Assert.Equal((snapshot.Name, snapshot.Id, snapshot.CreatedAt), (seen!.Name, seen.Id, seen.CreatedAt));
        Assert.Equal($"repl-1 {snapshot.Id}", pool.Control.Get(Notes, "mail")!.Text);
        Assert.Equal(snapshot.Id, pool.FindSnapshotById("mail", snapshot.Id)!.Id);
    }

    [Fact]
    public void CreateSnapshot_WithBookkeeping_WhoseCommitFails_LeavesNeitherTheSnapshotNorItsRecords()
    {
        FaultyBackingStore? store = null;
        using var temp = new TempPool(16L << 20, new PoolOptions { StoreFactory = (path, capacity, _) => store ??= new FaultyBackingStore(path, capacity) });
        temp.Pool.CreateVolume("mail", 1L << 20);
        temp.Pool.Control.Put(Notes, "mail", new Note("before", 0));
        temp.Pool.GetVolume("mail").Write(0, new byte[4096], forceUnitAccess: false);
        store!.FailFlushes = true;

        Assert.Throws<StorageException>(() => temp.Pool.CreateSnapshot("mail", "repl-1", bookkeeping: _ => new ControlBatch().Put(Notes, "mail", new Note("after", 1))));
        temp.Pool.SimulateCrash();
        store.FailFlushes = false;
        var pool = temp.Reopen();

        Assert.Empty(pool.ListSnapshots("mail"));
        Assert.Equal("before", pool.Control.Get(Notes, "mail")!.Text);
    }

    [Fact]
    public void SnapshotVolumesTogether_WithBookkeeping_GivesTheSnapshotsInTheMembersOrder_AndCommitsTheRecordsWithThem()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.CreateVolume("b", 1L << 20);
        temp.Pool.CreateVolume("a", 1L << 20);
        var (idB, idA) = (Guid.NewGuid(), Guid.NewGuid());

        temp.Pool.SnapshotVolumesTogether([("b", "s1", idB), ("a", "s1", idA)], "g/s1", cut =>
        {
            var batch = new ControlBatch();
            foreach (var s in cut)
            {
                batch.Put(Notes, s.Volume, new Note(s.Id.ToString(), cut.ToList().IndexOf(s)));
            }

            return batch;
        });
        temp.Pool.SimulateCrash();
        var pool = temp.Reopen();

        Assert.Equal(new Note(idB.ToString(), 0), pool.Control.Get(Notes, "b"));
        Assert.Equal(new Note(idA.ToString(), 1), pool.Control.Get(Notes, "a"));
    }

    [Fact]
    public void Get_RecordOfANewerVersion_IsRefusedNamingBothLayouts()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.Control.Put(new ControlKind<Note>("note", 2), "a", new Note("from the future", 1));

        var ex = Assert.Throws<StorageException>(() => temp.Pool.Control.Get(Notes, "a"));

        Assert.Equal(StorageError.Unsupported, ex.Error);
        Assert.Contains("layout 1.2, written by a newer Tidemark; this build reads layout 1.1", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Get_RecordOfAnOlderVersion_GoesThroughTheUpgrade()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.Control.Put(new ControlKind<OldNote>("note", 1), "a", new OldNote("kept"));
        var upgraded = new ControlKind<Note>("note", 2, (version, json) => new Note(json.GetProperty("text").GetString()!, version));

        Assert.Equal(new Note("kept", 1), temp.Pool.Control.Get(upgraded, "a"));
    }

    [Fact]
    public void Get_TornRecord_IsReportedCorrupt()
    {
        using var temp = new TempPool(16L << 20);
        var bytes = Notes.Encode(new Note("x", 1));
        bytes[^2] ^= 0x20;
        using (var batch = new RocksDbSharp.WriteBatch())
        {
            batch.Put(Encoding.ASCII.GetBytes("Xnote\0a"), bytes);
            temp.Pool.Meta.Write(batch);
        }

        var ex = Assert.Throws<StorageException>(() => temp.Pool.Control.Get(Notes, "a"));

        Assert.Equal(StorageError.Corrupt, ex.Error);
    }

    [Fact]
    public void Verify_CountsSoundControlRecords_AndReportsATornOne()
    {
        using var temp = new TempPool(16L << 20);
        temp.Pool.Control.Put(Notes, "a", new Note("fine", 1));
        var clean = temp.Pool.Verify();
        var bytes = Notes.Encode(new Note("x", 1));
        bytes[^2] ^= 0x20;
        using (var batch = new RocksDbSharp.WriteBatch())
        {
            batch.Put(Encoding.ASCII.GetBytes("Xnote\0b"), bytes);
            temp.Pool.Meta.Write(batch);
        }

        var report = temp.Pool.Verify();

        Assert.True(clean.IsClean);
        Assert.Equal(clean.ControlRecords + 1, report.ControlRecords);
        Assert.Equal("the note record 'b' fails its checksum; recreate it (or restore the pool metadata from a backup)", Assert.Single(report.Problems));
    }

    [Fact]
    public void Put_BadNames_AreRefusedClearly()
    {
        using var temp = new TempPool(16L << 20);

        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => temp.Pool.Control.Put(Notes, "", new Note("", 0))).Error);
        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => temp.Pool.Control.Put(Notes, "a\0b", new Note("", 0))).Error);
        Assert.Throws<ArgumentException>(() => new ControlKind<Note>("Notes!", 1));
    }

    [Fact]
    public void Envelope_GoldenBytes_AreUnchanged()
    {
        const string Golden = """
            0D29C7AB01000100 {"text":"one","count":1}
            """;
        var bytes = Notes.Encode(new Note("one", 1));
        var actual = Convert.ToHexString(bytes, 0, 8) + " " + Encoding.UTF8.GetString(bytes, 8, bytes.Length - 8);
        Assert.True(Golden == actual, "actual: " + actual);
        Assert.Equal(new Note("one", 1), Notes.Decode([.. Convert.FromHexString(Golden[..16]), .. Encoding.UTF8.GetBytes(Golden[17..])], "a"));
    }

    private sealed record OldNote(string Text);
}
