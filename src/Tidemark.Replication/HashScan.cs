using System.Buffers;
using System.IO.Hashing;

namespace Tidemark.Replication;

/// <summary>
/// The hashes two sites compare to find where two copies of a volume differ without sending the
/// data (seeding a replica on a copy made some other way, failing back without a shared snapshot).
/// A two-level tree: every 4 KiB block has a hash (XXH3-128), every 64 KiB granule a hash of its 16
/// block hashes. The sides first compare granule hashes (16 bytes per 64 KiB), then block hashes of
/// the granules that differ only, then the blocks that differ are sent. Every scan hashes with its
/// own random key (the seed of XXH3), so no pair of blocks can be prepared to collide in advance.
/// Bytes past the end of a device hash as zeros: a volume grown to the source's size reads zeros there.
/// </summary>
public sealed class HashScan
{
    public const int BlockBytes = 4096;
    public const int BlocksPerGranule = 16;
    public const int GranuleBytes = BlockBytes * BlocksPerGranule;
    public const int HashBytes = 16;

    /// <summary>Granules hashed per read: 4 MiB of the device at a time.</summary>
    private const int GranulesPerRead = 64;

    private readonly long _key;
    private readonly byte[] _zeroBlockHash = new byte[HashBytes];
    private readonly byte[] _zeroGranuleHash = new byte[HashBytes];

    /// <param name="key">The scan's key: both sides must hash with the same one.</param>
    public HashScan(long key)
    {
        _key = key;
        XxHash128.Hash(new byte[BlockBytes], _zeroBlockHash, key);
        GranuleHashOf(Enumerable.Repeat(_zeroBlockHash, BlocksPerGranule).SelectMany(h => h).ToArray(), _zeroGranuleHash);
    }

    public long Key => _key;

    /// <summary>Granules covering <paramref name="lengthBytes"/> (the last one may reach past the end).</summary>
    public static long GranuleCount(long lengthBytes) => (lengthBytes + GranuleBytes - 1) / GranuleBytes;

    /// <summary>The hash of a granule of zeros (a hole, or the area a volume grows into).</summary>
    public ReadOnlySpan<byte> ZeroGranule => _zeroGranuleHash;

    public ReadOnlySpan<byte> ZeroBlock => _zeroBlockHash;

    /// <summary>
    /// Hashes of granules [<paramref name="firstGranule"/>, +<paramref name="count"/>) of
    /// <paramref name="device"/> into <paramref name="hashes"/> (16 bytes each), and when given, their
    /// block hashes into <paramref name="blockHashes"/> (256 bytes per granule). Reads ahead: the next
    /// megabytes are read (on the pool: device reads are synchronous) while the current ones are
    /// hashed, and the read is awaited, so no thread waits on another.
    /// </summary>
    public async Task GranuleHashesAsync(IBlockDevice device, long firstGranule, int count, Memory<byte> hashes, Memory<byte> blockHashes = default, CancellationToken cancellationToken = default)
    {
        var buffers = new[] { ArrayPool<byte>.Shared.Rent(GranulesPerRead * GranuleBytes), ArrayPool<byte>.Shared.Rent(GranulesPerRead * GranuleBytes) };
        var ownBlockHashes = new byte[HashBytes * BlocksPerGranule];
        Task? ahead = null;
        Task ReadAheadAsync(int slot, int done) => Task.Run(() => ReadPadded(device, (firstGranule + done) * GranuleBytes, buffers[slot].AsSpan(0, Math.Min(GranulesPerRead, count - done) * GranuleBytes)), cancellationToken);
        try
        {
            var current = 0;
            for (var done = 0; done < count;)
            {
                var n = Math.Min(GranulesPerRead, count - done);
                await (ahead ?? ReadAheadAsync(current, done)).ConfigureAwait(false);
                ahead = done + n < count ? ReadAheadAsync(1 - current, done + n) : null;
                HashRead(
                    buffers[current].AsSpan(0, n * GranuleBytes),
                    hashes.Span.Slice(done * HashBytes, n * HashBytes),
                    blockHashes.IsEmpty ? default : blockHashes.Span.Slice(done * HashBytes * BlocksPerGranule, n * HashBytes * BlocksPerGranule),
                    ownBlockHashes);
                current = 1 - current;
                done += n;
            }
        }
        finally
        {
            // A read still running must not fill a buffer that went back to the pool.
            if (ahead is not null)
            {
                await ahead.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default).ConfigureAwait(false);
            }

            foreach (var buffer in buffers)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>The hash of one granule (no read-ahead); <paramref name="buffer"/> holds at least 64 KiB.</summary>
    public void GranuleHash(IBlockDevice device, long granule, Span<byte> hash, byte[] buffer)
    {
        var data = buffer.AsSpan(0, GranuleBytes);
        ReadPadded(device, granule * GranuleBytes, data);
        Span<byte> blocks = stackalloc byte[HashBytes * BlocksPerGranule];
        HashRead(data, hash[..HashBytes], default, blocks);
    }

    /// <summary>Hashes whole granules of <paramref name="data"/> into <paramref name="hashes"/> and, when not empty, <paramref name="blockHashes"/>.</summary>
    private void HashRead(ReadOnlySpan<byte> data, Span<byte> hashes, Span<byte> blockHashes, Span<byte> ownBlockHashes)
    {
        for (var g = 0; g < data.Length / GranuleBytes; g++)
        {
            var granule = data.Slice(g * GranuleBytes, GranuleBytes);
            var hash = hashes.Slice(g * HashBytes, HashBytes);
            var blocks = blockHashes.IsEmpty ? ownBlockHashes : blockHashes.Slice(g * HashBytes * BlocksPerGranule, HashBytes * BlocksPerGranule);
            if (!granule.ContainsAnyExcept((byte)0))
            {
                _zeroGranuleHash.CopyTo(hash);
                if (!blockHashes.IsEmpty)
                {
                    for (var b = 0; b < BlocksPerGranule; b++)
                    {
                        _zeroBlockHash.CopyTo(blocks[(b * HashBytes)..]);
                    }
                }

                continue;
            }

            BlockHashesOf(granule, blocks);
            GranuleHashOf(blocks, hash);
        }
    }

    /// <summary>The 16 block hashes of granule <paramref name="granule"/> (256 bytes into <paramref name="hashes"/>); <paramref name="buffer"/> holds at least 64 KiB.</summary>
    public void BlockHashes(IBlockDevice device, long granule, Span<byte> hashes, byte[] buffer)
    {
        var data = buffer.AsSpan(0, GranuleBytes);
        ReadPadded(device, granule * GranuleBytes, data);
        BlockHashesOf(data, hashes);
    }

    private void BlockHashesOf(ReadOnlySpan<byte> granule, Span<byte> hashes)
    {
        for (var b = 0; b < BlocksPerGranule; b++)
        {
            var block = granule.Slice(b * BlockBytes, BlockBytes);
            if (!block.ContainsAnyExcept((byte)0))
            {
                _zeroBlockHash.CopyTo(hashes[(b * HashBytes)..]);
                continue;
            }

            XxHash128.Hash(block, hashes.Slice(b * HashBytes, HashBytes), _key);
        }
    }

    private void GranuleHashOf(ReadOnlySpan<byte> blockHashes, Span<byte> hash) => XxHash128.Hash(blockHashes, hash, _key);

    /// <summary>Reads what the device has of the range and zeros the rest.</summary>
    private static void ReadPadded(IBlockDevice device, long offset, Span<byte> destination)
    {
        var available = (int)Math.Clamp(device.SizeBytes - offset, 0, destination.Length);
        if (available > 0)
        {
            device.Read(offset, destination[..available]);
        }

        destination[available..].Clear();
    }
}
