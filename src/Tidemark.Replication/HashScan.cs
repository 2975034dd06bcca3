using System.Security.Cryptography;

namespace Tidemark.Replication;

/// <summary>
/// The hashes two sites compare to find where two copies of a volume differ without sending the
/// data (seeding a replica on a copy made some other way, failing back without a shared snapshot).
/// A two-level tree: every 4 KiB block has a hash (the first 16 bytes of its SHA-256), every 64 KiB
/// granule a hash of its 16 block hashes. The sides first compare granule hashes (16 bytes per
/// 64 KiB), then block hashes of the granules that differ only, then the blocks that differ are sent.
/// Bytes past the end of a device hash as zeros: a volume grown to the source's size reads zeros there.
/// </summary>
public static class HashScan
{
    public const int BlockBytes = 4096;
    public const int BlocksPerGranule = 16;
    public const int GranuleBytes = BlockBytes * BlocksPerGranule;
    public const int HashBytes = 16;

    /// <summary>Granules hashed per read: 1 MiB of the device at a time.</summary>
    private const int GranulesPerRead = 16;

    private static readonly byte[] ZeroBlockHash = BlockHash(new byte[BlockBytes]);
    private static readonly byte[] ZeroGranuleHash = GranuleHashOf(Enumerable.Repeat(ZeroBlockHash, BlocksPerGranule).SelectMany(h => h).ToArray());

    /// <summary>Granules covering <paramref name="lengthBytes"/> (the last one may reach past the end).</summary>
    public static long GranuleCount(long lengthBytes) => (lengthBytes + GranuleBytes - 1) / GranuleBytes;

    /// <summary>The hash of a granule of zeros (a hole, or the area a volume grows into).</summary>
    public static ReadOnlySpan<byte> ZeroGranule => ZeroGranuleHash;

    public static ReadOnlySpan<byte> ZeroBlock => ZeroBlockHash;

    /// <summary>
    /// Hashes of granules [<paramref name="firstGranule"/>, +<paramref name="count"/>) of
    /// <paramref name="device"/> into <paramref name="hashes"/> (16 bytes each).
    /// <paramref name="buffer"/> holds at least 1 MiB.
    /// </summary>
    public static void GranuleHashes(IBlockDevice device, long firstGranule, int count, Span<byte> hashes, byte[] buffer)
    {
        Span<byte> blockHashes = stackalloc byte[HashBytes * BlocksPerGranule];
        for (var done = 0; done < count;)
        {
            var n = Math.Min(GranulesPerRead, count - done);
            var data = buffer.AsSpan(0, n * GranuleBytes);
            ReadPadded(device, (firstGranule + done) * GranuleBytes, data);
            for (var g = 0; g < n; g++)
            {
                var granule = data.Slice(g * GranuleBytes, GranuleBytes);
                var hash = hashes.Slice((done + g) * HashBytes, HashBytes);
                if (!granule.ContainsAnyExcept((byte)0))
                {
                    ZeroGranuleHash.CopyTo(hash);
                    continue;
                }

                BlockHashesOf(granule, blockHashes);
                GranuleHashOf(blockHashes, hash);
            }

            done += n;
        }
    }

    /// <summary>The 16 block hashes of granule <paramref name="granule"/> (256 bytes into <paramref name="hashes"/>); <paramref name="buffer"/> holds at least 64 KiB.</summary>
    public static void BlockHashes(IBlockDevice device, long granule, Span<byte> hashes, byte[] buffer)
    {
        var data = buffer.AsSpan(0, GranuleBytes);
        ReadPadded(device, granule * GranuleBytes, data);
        BlockHashesOf(data, hashes);
    }

    private static void BlockHashesOf(ReadOnlySpan<byte> granule, Span<byte> hashes)
    {
        Span<byte> full = stackalloc byte[SHA256.HashSizeInBytes];
        for (var b = 0; b < BlocksPerGranule; b++)
        {
            var block = granule.Slice(b * BlockBytes, BlockBytes);
            if (!block.ContainsAnyExcept((byte)0))
            {
                ZeroBlockHash.CopyTo(hashes[(b * HashBytes)..]);
                continue;
            }

            SHA256.HashData(block, full);
            full[..HashBytes].CopyTo(hashes[(b * HashBytes)..]);
        }
    }

    private static void GranuleHashOf(ReadOnlySpan<byte> blockHashes, Span<byte> hash)
    {
        Span<byte> full = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(blockHashes, full);
        full[..HashBytes].CopyTo(hash);
    }

    private static byte[] GranuleHashOf(byte[] blockHashes)
    {
        var hash = new byte[HashBytes];
        GranuleHashOf(blockHashes, hash);
        return hash;
    }

    private static byte[] BlockHash(byte[] block) => SHA256.HashData(block)[..HashBytes];

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
