using System.Buffers.Binary;
using System.Net.Http.Headers;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Replication;

namespace Tidemark.Server.Replication;

/// <summary>What a hash scan found: the ranges of a snapshot that differ from the partner's scan base, and how much it compared.</summary>
public sealed record ScanPlan(ScanBaseDto Base, IReadOnlyList<(long Offset, long Length)> Ranges, long ScannedBytes, long DifferingGranules, long HashBytes)
{
    public long RangeBytes => Ranges.Sum(r => r.Length);
}

/// <summary>
/// The sending side of a hash scan (<see cref="HashScan"/>): streams the partner's granule hashes
/// while hashing the same granules of the local snapshot, window by window; for each window asks
/// the partner for the block hashes of the granules that differ and compares those; what differs
/// becomes the ranges of an incremental stream on top of the partner's scan base. Both sides read
/// their copy once (and the differing granules twice); the link carries 16 bytes of granule hash per
/// 64 KiB of volume (0.025%), 256 bytes of block hashes per differing granule, then the differing blocks.
/// </summary>
public static class HashScanner
{
    /// <summary>Granules compared before their differing ones are resolved to blocks: 256 MiB of the volume.</summary>
    private const int WindowGranules = 4096;

    public static async Task<ScanPlan> ScanAsync(HttpClient http, string remote, SnapshotDevice local, ScanBaseDto scanBase, Action<long> progress, CancellationToken ct)
    {
        if (scanBase.SizeBytes > local.SizeBytes)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the partner's copy is larger ({scanBase.SizeBytes:N0} bytes) than the source ({local.SizeBytes:N0}); volumes cannot shrink: grow the source or use another volume there");
        }

        if (scanBase.LogicalBlockSizeBytes != local.LogicalBlockSizeBytes)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the partner's copy has {scanBase.LogicalBlockSizeBytes}-byte blocks and the source {local.LogicalBlockSizeBytes}-byte ones; it cannot become its replica");
        }

        var localGranules = HashScan.GranuleCount(local.SizeBytes);
        var remoteGranules = HashScan.GranuleCount(scanBase.SizeBytes);
        using var response = await http.GetAsync($"{remote}/scan/{scanBase.SnapshotId}/granules", HttpCompletionOption.ResponseHeadersRead, ct);
        await PartnerLink.EnsureSuccessAsync(response, "the partner could not hash its copy", ct);
        await using var theirs = await response.Content.ReadAsStreamAsync(ct);

        var ranges = new List<(long Offset, long Length)>();
        var buffer = new byte[1 << 20];
        var mine = new byte[WindowGranules * HashScan.HashBytes];
        var remoteHashes = new byte[WindowGranules * HashScan.HashBytes];
        var differing = new List<long>();
        long differingGranules = 0, differingAsked = 0;
        for (long first = 0; first < localGranules; first += WindowGranules)
        {
            var n = (int)Math.Min(WindowGranules, localGranules - first);
            await Task.Run(() => HashScan.GranuleHashes(local, first, n, mine, buffer), ct);

            // Granules the partner's copy does not reach compare with zeros (it grows into zeros).
            var fromRemote = (int)Math.Clamp(remoteGranules - first, 0, n);
            if (fromRemote > 0)
            {
                await theirs.ReadExactlyAsync(remoteHashes.AsMemory(0, fromRemote * HashScan.HashBytes), ct);
            }

            differing.Clear();
            for (var g = 0; g < n; g++)
            {
                var expected = g < fromRemote ? remoteHashes.AsSpan(g * HashScan.HashBytes, HashScan.HashBytes) : HashScan.ZeroGranule;
                if (!mine.AsSpan(g * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(expected))
                {
                    differing.Add(first + g);
                }
            }

            differingGranules += differing.Count;
            differingAsked += differing.Count(g => g < remoteGranules);
            await ResolveBlocksAsync(http, remote, local, scanBase, remoteGranules, differing, ranges, ct);
            progress(Math.Min(local.SizeBytes, (first + n) * HashScan.GranuleBytes));
        }

        if (await theirs.ReadAsync(new byte[1], ct) != 0)
        {
            throw new StorageException(StorageError.Unavailable, "the partner sent more granule hashes than its copy has");
        }

        // On the link: every granule hash of the partner's copy, then for each differing granule it
        // has, its index up and its block hashes down.
        var asked = differingAsked;
        return new ScanPlan(scanBase, ranges, local.SizeBytes, differingGranules, (remoteGranules * HashScan.HashBytes) + (asked * (8 + (HashScan.HashBytes * HashScan.BlocksPerGranule))));
    }

    /// <summary>Compares the block hashes of differing granules and appends the blocks that differ (merged into ranges).</summary>
    private static async Task ResolveBlocksAsync(HttpClient http, string remote, SnapshotDevice local, ScanBaseDto scanBase, long remoteGranules, List<long> granules, List<(long Offset, long Length)> ranges, CancellationToken ct)
    {
        if (granules.Count == 0)
        {
            return;
        }

        var asked = granules.Where(g => g < remoteGranules).ToList();
        var remoteHashes = new byte[asked.Count * HashScan.HashBytes * HashScan.BlocksPerGranule];
        if (asked.Count > 0)
        {
            var body = new byte[asked.Count * 8];
            for (var i = 0; i < asked.Count; i++)
            {
                BinaryPrimitives.WriteInt64LittleEndian(body.AsSpan(i * 8), asked[i]);
            }

            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var response = await http.PostAsync($"{remote}/scan/{scanBase.SnapshotId}/blocks", content, ct);
            await PartnerLink.EnsureSuccessAsync(response, "the partner could not hash its copy's blocks", ct);
            await using var stream = await response.Content.ReadAsStreamAsync(ct);
            await stream.ReadExactlyAsync(remoteHashes, ct);
        }

        await Task.Run(
            () =>
            {
                var buffer = new byte[HashScan.GranuleBytes];
                var mine = new byte[HashScan.HashBytes * HashScan.BlocksPerGranule];
                var perGranule = HashScan.HashBytes * HashScan.BlocksPerGranule;
                var a = 0;
                foreach (var granule in granules)
                {
                    HashScan.BlockHashes(local, granule, mine, buffer);
                    var theirs = granule < remoteGranules ? remoteHashes.AsSpan(a++ * perGranule, perGranule) : default;
                    for (var b = 0; b < HashScan.BlocksPerGranule; b++)
                    {
                        var offset = (granule * HashScan.GranuleBytes) + (b * HashScan.BlockBytes);
                        if (offset >= local.SizeBytes)
                        {
                            break;
                        }

                        var expected = theirs.IsEmpty ? HashScan.ZeroBlock : theirs.Slice(b * HashScan.HashBytes, HashScan.HashBytes);
                        if (mine.AsSpan(b * HashScan.HashBytes, HashScan.HashBytes).SequenceEqual(expected))
                        {
                            continue;
                        }

                        var length = Math.Min(HashScan.BlockBytes, local.SizeBytes - offset);
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
            },
            ct);
    }
}
