using System.Buffers.Binary;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>What a hash scan found: the ranges of a snapshot that differ from the partner's scan base, and how much it compared.</summary>
public sealed record ScanPlan(ScanBaseDto Base, IReadOnlyList<(long Offset, long Length)> Ranges, long ScannedBytes, long DifferingGranules, long HashBytes)
{
    public long RangeBytes => Ranges.Sum(r => r.Length);

    /// <summary>
    /// With a <see cref="ScanReference"/>: the granules in which the partner's copy differs from the
    /// reference snapshot, i.e. that the partner wrote after it (0: it still holds exactly that snapshot).
    /// </summary>
    public long PartnerChangedGranules { get; init; }

    /// <summary>
    /// A fail-back scan into a copy that is not the common snapshot any more (written after it, or
    /// it cannot be told): the common snapshot's name, for the split-brain rule at the partner; else null.
    /// </summary>
    public string? PartnerDivergedAfter { get; init; }
}

/// <summary>
/// A snapshot the partner's copy should still equal (a fail-back's common snapshot, which the
/// partner no longer has): the scan also counts the granules where the partner's copy differs from it.
/// <paramref name="ChangedGranules"/> are the granules this side changed since it (from the engine's
/// diff): elsewhere the scanned snapshot equals the reference, so only those are hashed twice.
/// </summary>
public sealed record ScanReference(SnapshotDevice Device, IReadOnlySet<long> ChangedGranules);

/// <summary>
/// The sending side of a hash scan (<see cref="HashScan"/>): streams the partner's granule hashes
/// while hashing the same granules of the local snapshot, window by window; for each window asks
/// the partner for the block hashes of the granules that differ and compares those; what differs
/// becomes the ranges of an incremental stream on top of the partner's scan base. Both sides read
/// their copy once (the partner reads the differing granules again); the link carries 16 bytes of granule hash per
/// 64 KiB of volume (0.025%), 256 bytes of block hashes per differing granule, then the differing blocks.
/// </summary>
public static class HashScanner
{
    /// <summary>Granules compared before their differing ones are resolved to blocks: 256 MiB of the volume.</summary>
    private const int WindowGranules = 4096;

    private const int PerGranule = HashScan.HashBytes * HashScan.BlocksPerGranule;

    public static async Task<ScanPlan> ScanAsync(HttpClient http, string remote, SnapshotDevice local, ScanBaseDto scanBase, Action<long> progress, CancellationToken ct, ScanReference? reference = null)
    {
        if (scanBase.SizeBytes > local.SizeBytes)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the partner's copy is larger ({scanBase.SizeBytes:N0} bytes) than the source ({local.SizeBytes:N0}); volumes cannot shrink: grow the source or use another volume there");
        }

        if (scanBase.LogicalBlockSizeBytes != local.LogicalBlockSizeBytes)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the partner's copy has {scanBase.LogicalBlockSizeBytes}-byte blocks and the source {local.LogicalBlockSizeBytes}-byte ones; it cannot become its replica");
        }

        var scan = new HashScan(BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8)));
        var localGranules = HashScan.GranuleCount(local.SizeBytes);
        var remoteGranules = HashScan.GranuleCount(scanBase.SizeBytes);
        using var response = await http.GetAsync($"{remote}/scan/{scanBase.SnapshotId}/granules?key={scan.Key}", HttpCompletionOption.ResponseHeadersRead, ct);
        await PartnerLink.EnsureSuccessAsync(response, "the partner could not hash its copy", ct);
        await using var theirs = await response.Content.ReadAsStreamAsync(ct);

        var mine = new byte[WindowGranules * HashScan.HashBytes];
        var mineBlocks = new byte[WindowGranules * PerGranule];
        var remoteHashes = new byte[WindowGranules * HashScan.HashBytes];
        long differingGranules = 0, differingAsked = 0, partnerChanged = 0;
        var referenceHash = new byte[HashScan.HashBytes];
        var referenceBuffer = reference is null ? [] : new byte[HashScan.GranuleBytes];
        var referenceGranules = reference is null ? 0 : HashScan.GranuleCount(reference.Device.SizeBytes);

        // Each window's differing granules are resolved to blocks (a request to the partner) while
        // the next window is read and hashed here; the results are joined in order at the end.
        var resolving = new List<Task<List<(long Offset, long Length)>>>();
        for (long first = 0; first < localGranules; first += WindowGranules)
        {
            var n = (int)Math.Min(WindowGranules, localGranules - first);
            await scan.GranuleHashesAsync(local, first, n, mine, mineBlocks, ct);

            // Granules the partner's copy does not reach compare with zeros (it grows into zeros).
            var fromRemote = (int)Math.Clamp(remoteGranules - first, 0, n);
            if (fromRemote > 0)
            {
                await theirs.ReadExactlyAsync(remoteHashes.AsMemory(0, fromRemote * HashScan.HashBytes), ct);
            }

            var differing = new List<long>();
            for (var g = 0; g < n; g++)
            {
                var expected = g < fromRemote ? remoteHashes.AsSpan(g * HashScan.HashBytes, HashScan.HashBytes) : scan.ZeroGranule;
                var differs = !mine.AsSpan(g * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(expected);
                if (differs)
                {
                    differing.Add(first + g);
                }

                if (reference is not null)
                {
                    // Where this side changed nothing since the reference, the scanned snapshot is
                    // the reference: the partner differs from one where it differs from the other.
                    if (reference.ChangedGranules.Contains(first + g))
                    {
                        if (first + g < referenceGranules)
                        {
                            scan.GranuleHash(reference.Device, first + g, referenceHash, referenceBuffer);
                        }
                        else
                        {
                            scan.ZeroGranule.CopyTo(referenceHash);
                        }

                        differs = !referenceHash.AsSpan().SequenceEqual(expected);
                    }

                    partnerChanged += differs ? 1 : 0;
                }
            }

            differingGranules += differing.Count;
            differingAsked += differing.Count(g => g < remoteGranules);
            var blocks = new byte[differing.Count * PerGranule];
            for (var i = 0; i < differing.Count; i++)
            {
                mineBlocks.AsSpan((int)(differing[i] - first) * PerGranule, PerGranule).CopyTo(blocks.AsSpan(i * PerGranule));
            }

            resolving.Add(ResolveBlocksAsync(http, remote, scan, local.SizeBytes, scanBase, remoteGranules, differing, blocks, ct));
            if (resolving.Count(t => !t.IsCompleted) > 2)
            {
                await Task.WhenAny(resolving.Where(t => !t.IsCompleted));
            }

            progress(Math.Min(local.SizeBytes, (first + n) * HashScan.GranuleBytes));
        }

        if (await theirs.ReadAsync(new byte[1], ct) != 0)
        {
            throw new StorageException(StorageError.Unavailable, "the partner sent more granule hashes than its copy has");
        }

        var ranges = new List<(long Offset, long Length)>();
        foreach (var window in await Task.WhenAll(resolving))
        {
            foreach (var (offset, length) in window)
            {
                Append(ranges, offset, length);
            }
        }

        // On the link: every granule hash of the partner's copy, then for each differing granule it
        // has, its index up and its block hashes down.
        return new ScanPlan(scanBase, ranges, local.SizeBytes, differingGranules, (remoteGranules * HashScan.HashBytes) + (differingAsked * (8 + PerGranule))) { PartnerChangedGranules = partnerChanged };
    }

    /// <summary>Compares the partner's block hashes of differing granules with <paramref name="mine"/> (theirs, in the same order) and returns the blocks that differ, merged into ranges.</summary>
    private static async Task<List<(long Offset, long Length)>> ResolveBlocksAsync(HttpClient http, string remote, HashScan scan, long size, ScanBaseDto scanBase, long remoteGranules, List<long> granules, byte[] mine, CancellationToken ct)
    {
        var ranges = new List<(long Offset, long Length)>();
        if (granules.Count == 0)
        {
            return ranges;
        }

        var asked = granules.Where(g => g < remoteGranules).ToList();
        var remoteHashes = new byte[asked.Count * PerGranule];
        if (asked.Count > 0)
        {
            var body = new byte[asked.Count * 8];
            for (var i = 0; i < asked.Count; i++)
            {
                BinaryPrimitives.WriteInt64LittleEndian(body.AsSpan(i * 8), asked[i]);
            }

            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var response = await http.PostAsync($"{remote}/scan/{scanBase.SnapshotId}/blocks?key={scan.Key}", content, ct);
            await PartnerLink.EnsureSuccessAsync(response, "the partner could not hash its copy's blocks", ct);
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            await stream.ReadExactlyAsync(remoteHashes, ct);
        }

        // Granules the partner asked about come first in its answer, in order; the others (past
        // the end of its copy) compare with zero blocks.
        var a = 0;
        for (var i = 0; i < granules.Count; i++)
        {
            var granule = granules[i];
            var theirs = granule < remoteGranules ? remoteHashes.AsMemory(a++ * PerGranule, PerGranule) : Memory<byte>.Empty;
            for (var b = 0; b < HashScan.BlocksPerGranule; b++)
            {
                var offset = (granule * HashScan.GranuleBytes) + (b * HashScan.BlockBytes);
                if (offset >= size)
                {
                    break;
                }

                var expected = theirs.IsEmpty ? scan.ZeroBlock : theirs.Span.Slice(b * HashScan.HashBytes, HashScan.HashBytes);
                if (mine.AsSpan((i * PerGranule) + (b * HashScan.HashBytes), HashScan.HashBytes).SequenceEqual(expected))
                {
                    continue;
                }

                Append(ranges, offset, Math.Min(HashScan.BlockBytes, size - offset));
            }
        }

        return ranges;
    }

    /// <summary>Adds a range, merged with the last one when they touch.</summary>
    private static void Append(List<(long Offset, long Length)> ranges, long offset, long length)
    {
        if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == offset)
        {
            ranges[^1] = (ranges[^1].Offset, ranges[^1].Length + length);
        }
        else
        {
            ranges.Add((offset, length));
        }
    }
}
