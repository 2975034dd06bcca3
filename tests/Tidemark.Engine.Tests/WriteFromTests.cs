using Microsoft.Win32.SafeHandles;
using Tidemark.Engine;
using Tidemark.Engine.Storage;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Volume.WriteFrom: a payload the store pulls from its source (the transport's splice path) lands
/// as Write would put it, front to back, and a source or store that fails part-way leaves the volume
/// as a failed write does.
/// </summary>
public class WriteFromTests
{
    [Fact]
    public void WriteFrom_FreshRange_ReadsBack_AndTheFileStorePullsItInPieces_ThenOverwritesInOnePull()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var data = Bytes.Pattern(1 << 20, 1);
        var source = new RecordingSource(data);

        v.WriteFrom(64 << 10, data.Length, source, forceUnitAccess: false);

        Assert.Equal(data, Bytes.Read(v, 64 << 10, data.Length));
        Assert.Equal(0, source.RemainingBytes);

        // Fresh blocks: the file store asks in 32 KiB pieces (small page-cache folios, FileBackingStore.MaxWriteBytes).
        Assert.Equal(data.Length, source.FileFills.Sum());
        Assert.All(source.FileFills, fill => Assert.InRange(fill, 4096, FileBackingStore.MaxWriteBytes));

        // An overwrite in place is not cut into pieces: one pull per run of the store (one here).
        var again = Bytes.Pattern(1 << 20, 2);
        var second = new RecordingSource(again);
        v.WriteFrom(64 << 10, again.Length, second, forceUnitAccess: true);
        Assert.Equal(again.Length, second.FileFills.Sum());
        Assert.True(second.FileFills.Max() > FileBackingStore.MaxWriteBytes, $"pulls of {string.Join(", ", second.FileFills)} bytes");
        Assert.Equal(again, Bytes.Read(v, 64 << 10, again.Length));
        t.Reopen();
        Assert.Equal(again, Bytes.Read(t.Pool.GetVolume("vol"), 64 << 10, again.Length));
        t.AssertVerifyClean();
    }

    [Fact]
    public void WriteFrom_OverASnapshotsSharedBlocks_Redirects_AndTheSnapshotKeepsItsData()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var monday = Bytes.Pattern(512 << 10, 3);
        v.Write(0, monday, forceUnitAccess: false);
        t.Pool.CreateSnapshot("vol", "monday");

        // Half of the range was rewritten after the snapshot (in place from then on): the pull is
        // redirected whole and still front to back.
        v.Write(0, Bytes.Pattern(128 << 10, 4), forceUnitAccess: false);
        var tuesday = Bytes.Pattern(512 << 10, 5);
        v.WriteFrom(0, tuesday.Length, new RecordingSource(tuesday), forceUnitAccess: false);

        Assert.Equal(tuesday, Bytes.Read(v, 0, tuesday.Length));
        Assert.Equal(monday, Bytes.Read(t.Pool.OpenSnapshot("vol@monday"), 0, monday.Length));
        t.Pool.Flush();
        t.AssertVerifyClean();
    }

    [Fact]
    public void WriteFrom_SourceFailsPartWay_ThePeersFailurePassesThrough_AndNoFreshBlockIsKept()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var data = Bytes.Pattern(256 << 10, 6);
        var source = new RecordingSource(data) { FailAfterBytes = 40 << 10, Failure = () => new PayloadSourceException("the peer closed in the middle of a payload", new EndOfStreamException()) };

        var ex = Assert.Throws<PayloadSourceException>(() => v.WriteFrom(0, data.Length, source, forceUnitAccess: false));

        Assert.True(ex.PeerClosed);
        Assert.Equal(0L, v.AllocatedBytes);
        Assert.All(Bytes.Read(v, 0, data.Length), b => Assert.Equal(0, b));

        // The volume takes the next write as usual.
        v.WriteFrom(0, data.Length, new RecordingSource(data), forceUnitAccess: false);
        Assert.Equal(data, Bytes.Read(v, 0, data.Length));
        t.Pool.Flush();
        t.AssertVerifyClean();
    }

    [Theory]
    [InlineData(28, StorageError.NoSpace)]
    [InlineData(5, StorageError.IoError)]
    public void WriteFrom_TheFileFailsPartWay_IsAStorageError_AndTheSourceKeepsTheRest(int errno, StorageError expected)
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20);
        var data = Bytes.Pattern(256 << 10, 7);
        var source = new RecordingSource(data) { FailAfterBytes = 64 << 10, Failure = () => new IOException("splice into the store failed", errno) };

        var ex = Assert.Throws<StorageException>(() => v.WriteFrom(0, data.Length, source, forceUnitAccess: false));

        Assert.Equal(expected, ex.Error);
        Assert.Equal(data.Length - (64 << 10), source.RemainingBytes);
        Assert.Equal(0L, v.AllocatedBytes);
    }

    [Fact]
    public void WriteFrom_NotWholeBlocks_GoesThroughMemory_AndMergesItsPartialBlocks()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 16L << 20, 512);
        var first = Bytes.Pattern(16 << 10, 8);
        v.Write(0, first, forceUnitAccess: false);
        var data = Bytes.Pattern(9 << 10, 9);
        var source = new RecordingSource(data);

        v.WriteFrom(1536, data.Length, source, forceUnitAccess: false);

        Assert.Empty(source.FileFills);
        data.CopyTo(first, 1536);
        Assert.Equal(first, Bytes.Read(v, 0, first.Length));
    }

    [Fact]
    public void WriteFrom_OnASnapshot_IsRefusedAsReadOnly()
    {
        using var t = new TempPool();
        t.Pool.CreateVolume("vol", 16L << 20);
        t.Pool.CreateSnapshot("vol", "monday");
        IBlockDevice snapshot = t.Pool.OpenSnapshot("vol@monday");
        var source = new RecordingSource(new byte[8192]);

        var ex = Assert.Throws<StorageException>(() => snapshot.WriteFrom(0, 8192, source, forceUnitAccess: false));

        Assert.Equal(StorageError.ReadOnly, ex.Error);
        Assert.Equal(0, source.RemainingBytes); // taken whole through memory first: nothing to skip
    }

    /// <summary>A payload in memory that records how the store pulled it, and can fail after some bytes.</summary>
    private sealed class RecordingSource(byte[] data) : IPayloadSource
    {
        private int _taken;

        public List<int> FileFills { get; } = [];

        public int FailAfterBytes { get; init; } = int.MaxValue;

        public Func<Exception> Failure { get; init; } = () => new IOException("failed");

        public int RemainingBytes => data.Length - _taken;

        public void Fill(Span<byte> destination)
        {
            Take(destination.Length).CopyTo(destination);
        }

        public void FillFile(SafeFileHandle file, long fileOffset, int lengthBytes)
        {
            FileFills.Add(lengthBytes);
            RandomAccess.Write(file, Take(lengthBytes), fileOffset);
        }

        private ReadOnlySpan<byte> Take(int length)
        {
            if (length > RemainingBytes)
            {
                throw new InvalidOperationException($"asked for {length} bytes with {RemainingBytes} left");
            }

            if (_taken + length > FailAfterBytes)
            {
                throw Failure();
            }

            var span = data.AsSpan(_taken, length);
            _taken += length;
            return span;
        }
    }
}
