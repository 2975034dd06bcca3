namespace Tidemark.Engine.Storage;

/// <summary>
/// Where a pool keeps data blocks: a regular file, a raw block device, (later) a RADOS object set.
/// Offsets are bytes from the start of the store. Writes may sit in a volatile cache until
/// <see cref="Flush"/> returns, exactly like a disk; the engine orders flushes before the metadata
/// that points at the data (DESIGN.md, durability contract). Implementations are thread-safe.
/// </summary>
public interface IBackingStore : IDisposable
{
    /// <summary>Where the store lives, for messages and the store record ("/srv/pool/store-0.dat").</summary>
    string Location { get; }

    /// <summary>Bytes the store may hold; the allocator never hands out blocks beyond it.</summary>
    long CapacityBytes { get; }

    void Read(long offsetBytes, Span<byte> destination);

    /// <summary>
    /// Reads several ranges of the store into one buffer (the runs of a fragmented volume range).
    /// A store whose every read is a network round trip (RADOS) starts them all at once; the
    /// default reads them one after another, which costs a local store nothing.
    /// </summary>
    void ReadScattered(ReadOnlySpan<StoreRead> reads, Span<byte> destination)
    {
        foreach (var read in reads)
        {
            Read(read.OffsetBytes, destination.Slice(read.DestinationOffset, read.LengthBytes));
        }
    }

    void Write(long offsetBytes, ReadOnlySpan<byte> source);

    /// <summary>
    /// Writes into blocks just allocated for this write (a thin volume's first write, a redirect
    /// after a snapshot), not an overwrite in place. The same bytes land as with <see cref="Write"/>;
    /// a store may lay the write out differently because nothing of the range is cached yet (the
    /// file store writes it in pieces, see FileBackingStore.MaxWriteBytes).
    /// </summary>
    void WriteFresh(long offsetBytes, ReadOnlySpan<byte> source) => Write(offsetBytes, source);

    /// <summary>
    /// Reads of this store that are worth having in flight at once (see
    /// <see cref="IBlockDevice.PreferredConcurrency"/>): 1 for a local file or device, whose reads
    /// are page-cache copies best done inline.
    /// </summary>
    int PreferredConcurrency => 1;

    /// <summary>Makes every completed write durable.</summary>
    void Flush();

    /// <summary>
    /// Called by a commit before it takes anything from the volumes' maps. A store whose flush can
    /// fail for a while and then work again (a RADOS cluster that is away) flushes here, so such a
    /// failure fails the commit with nothing consumed and the pool stays online; a local store does
    /// nothing (its one flush after collecting the commit is all it needs).
    /// </summary>
    void PrepareCommit()
    {
    }

    /// <summary>
    /// Gives the bytes of a freed range back to the host (a hole in a sparse file), so a thin pool is
    /// thin on the host too. Called only for blocks whose freeing is durable and that nobody reads or
    /// has been handed again (the pool calls it before the allocator may reuse them); reading a
    /// discarded range returns zeros. Best effort: a store that cannot does nothing.
    /// </summary>
    void Discard(long offsetBytes, long lengthBytes)
    {
    }

    /// <summary>
    /// Writes the next <paramref name="lengthBytes"/> of <paramref name="source"/> at
    /// <paramref name="offsetBytes"/>, as <see cref="Write"/> (or <see cref="WriteFresh"/> when
    /// <paramref name="fresh"/>) would. The default fills a buffer and writes it (a RADOS store sends
    /// memory anyway); the file store lets the source fill its file (splice, one copy fewer). A
    /// <see cref="PayloadSourceException"/> out of the source passes through unchanged: it is the
    /// connection's failure, not the store's.
    /// </summary>
    void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool fresh)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(lengthBytes);
        try
        {
            var data = buffer.AsSpan(0, lengthBytes);
            source.Fill(data);
            if (fresh)
            {
                WriteFresh(offsetBytes, data);
            }
            else
            {
                Write(offsetBytes, data);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Reads like <see cref="Read"/> without holding the caller's thread while the store waits (a
    /// RADOS round trip): the task ends, possibly on the store's own thread, once
    /// <paramref name="destination"/> holds the data; its continuations run there, so they must not
    /// block it nor close the store (librados would join its own thread).
    /// The default reads synchronously (a local store's read is a page-cache copy).
    /// </summary>
    ValueTask ReadAsync(long offsetBytes, Memory<byte> destination)
    {
        try
        {
            Read(offsetBytes, destination.Span);
            return default;
        }
        catch (Exception ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    /// <summary>
    /// <see cref="ReadScattered"/> as <see cref="ReadAsync"/> does <see cref="Read"/>. <paramref name="reads"/>
    /// is used only during the call (the caller may reuse it at once); <paramref name="destination"/>
    /// until the task ended.
    /// </summary>
    ValueTask ReadScatteredAsync(ReadOnlySpan<StoreRead> reads, Memory<byte> destination)
    {
        try
        {
            ReadScattered(reads, destination.Span);
            return default;
        }
        catch (Exception ex)
        {
            return ValueTask.FromException(ex);
        }
    }
}

/// <summary>One range of a scattered read: <see cref="LengthBytes"/> bytes of the store at <see cref="OffsetBytes"/> go to <see cref="DestinationOffset"/> of the caller's buffer.</summary>
public readonly record struct StoreRead(long OffsetBytes, int DestinationOffset, int LengthBytes);
