using Tidemark.Engine.Storage;
using Tidemark.TestKit;

namespace Tidemark.Engine.Tests;

/// <summary>The file store's own behaviour, below the pool: writes into fresh blocks (in pieces) and overwrites (one pwrite).</summary>
public class FileBackingStoreTests
{
    [Theory]
    [InlineData(0, FileBackingStore.MaxWriteBytes, true)]
    [InlineData(4096, FileBackingStore.MaxWriteBytes + 4096, true)]
    [InlineData(12_288, (3 * FileBackingStore.MaxWriteBytes) + 512, true)]
    [InlineData(1 << 20, 1 << 20, true)]
    [InlineData(12_288, (3 * FileBackingStore.MaxWriteBytes) + 512, false)]
    [InlineData(1 << 20, 1 << 20, false)]
    public void Write_LongerThanOnePiece_ReadsBackIdentically_AndLeavesItsNeighboursAlone(long offset, int length, bool fresh)
    {
        using var directory = new TempDirectory("tidemark-filestore-");
        using var store = FileBackingStore.Create(directory.Combine("store"), 16L << 20);
        var before = new byte[4096];
        var after = new byte[4096];
        Random.Shared.NextBytes(before);
        Random.Shared.NextBytes(after);
        if (offset >= before.Length)
        {
            store.Write(offset - before.Length, before);
        }

        store.Write(offset + length, after);
        var data = new byte[length];
        new Random(length).NextBytes(data);

        if (fresh)
        {
            store.WriteFresh(offset, data);
        }
        else
        {
            store.Write(offset, data);
        }

        var read = new byte[length];
        store.Read(offset, read);
        Assert.True(data.AsSpan().SequenceEqual(read), "the write did not read back identically");
        var neighbour = new byte[4096];
        store.Read(offset + length, neighbour);
        Assert.True(after.AsSpan().SequenceEqual(neighbour), "the block after the write changed");
        if (offset >= before.Length)
        {
            store.Read(offset - before.Length, neighbour);
            Assert.True(before.AsSpan().SequenceEqual(neighbour), "the block before the write changed");
        }
    }
}
