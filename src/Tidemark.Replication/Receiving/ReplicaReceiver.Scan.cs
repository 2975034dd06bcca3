using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// Hash scans at the receiving end: consent (accept), the scan base snapshot and the hashes it answers with.
public sealed partial class ReplicaReceiver
{
    /// <summary>
    /// Starts a hash scan of <paramref name="volume"/> for <paramref name="partner"/>, which has no
    /// snapshot in common with it: the volume's current state is kept as a snapshot (the base the
    /// differences are applied on; reused when a scan is repeated and nothing changed since) and
    /// described. Allowed into a replica of that partner (also a half-received first transfer), into
    /// a volume the administrator named a seed, and for a fail-back into the volume it came from.
    /// </summary>
    public ScanBaseDto BeginScan(string volume, string partner, bool seed, bool reverse, long generation = 0)
    {
        var gate = _book.EnterTransfer(volume);

        try
        {
            if (!_pool.TryGetVolume(volume, out var target))
            {
                throw new StorageException(StorageError.NotFound, $"there is no volume {volume} here to compare with");
            }

            if (reverse)
            {
                CheckGeneration(volume, partner, generation);
            }

            _staging.CheckAccepts(volume, reverse);
            if (!reverse)
            {
                if (!_book.HasLeftovers(volume) && !_book.IsReplicaFrom(volume, partner))
                {
                    // Seeding overwrites the volume: only with this site's consent, given here.
                    throw new StorageException(StorageError.AlreadyExists, seed
                        ? $"{volume} exists at this site and its administrator has not offered it as a replica target of {partner}; run 'tidemark replica accept {volume} --from {partner}' here first (what it holds is kept as a snapshot), or replicate under another name (--as NAME)"
                        : $"{volume} exists here and is not a replica from {partner}; if it holds a copy of the source (an imported stream, a restored backup, a disk copy), run 'tidemark replica accept {volume} --from {partner}' here and create the replica with --seed, so only the blocks that differ are sent; otherwise replicate under another name (--as NAME)");
                }

                if (seed && WritableExports(volume) is { Count: > 0 } exports)
                {
                    throw new StorageException(StorageError.Busy, $"{volume} is exported read-write here ({string.Join(", ", exports)}); a seed must not change while it is compared and brought up to date: delete those exports first");
                }
            }

            // The differences are applied into the live image: nobody may be reading it meanwhile.
            ThrowIfAttached(volume, reverse ? $"failing back from {partner} into {volume}" : $"a hash scan of {volume} for {partner}'s replica");

            // What a broken transfer applied stays: the scan compares the volume as it is.
            _book.ClearPartial(volume);
            _book.ClearPending(volume);
            var prefix = reverse ? FailBackBasePrefix : ScanBasePrefix;
            var newest = _pool.ListSnapshots(volume).MaxBy(s => s.CreatedAt);
            var scanBase = newest is not null && newest.Name.StartsWith(prefix, StringComparison.Ordinal) && _pool.Diff(volume, newest.Name, null).Count == 0
                ? newest
                : _pool.CreateSnapshot(volume, SnapshotStreamReader.UniqueName(_pool, volume, $"{prefix}{DateTimeOffset.UtcNow.UtcDateTime:yyyyMMdd-HHmmss}"));
            return new ScanBaseDto(scanBase.Id, scanBase.Name, scanBase.SizeBytes, target.LogicalBlockSizeBytes);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>
    /// Offers the existing <paramref name="volume"/> as the target of <paramref name="partner"/>'s
    /// replica (the consent a seed needs): what it holds is kept as a snapshot first, which the
    /// record names as its state until the first replicated snapshot arrives; from now on it is a
    /// replica, read-only until promoted.
    /// </summary>
    public (IncomingReplicaDto Record, SnapshotInfo Kept) Accept(string volume, string partner, string? sourceVolume)
    {
        var gate = _book.EnterTransfer(volume);

        try
        {
            if (!_pool.TryGetVolume(volume, out _))
            {
                throw new StorageException(StorageError.NotFound, $"there is no volume {volume} here; a replica into a new volume needs no consent (its first sync creates it)");
            }

            if (FindIncoming(volume) is { } existing)
            {
                throw new StorageException(StorageError.AlreadyExists, existing.Promoted
                    ? $"{volume} is a promoted replica of {existing.Partner}; 'tidemark replica demote {volume}' makes it a replica again"
                    : $"{volume} is already a replica of {existing.Partner}:{existing.SourceVolume}");
            }

            if (WritableExports(volume) is { Count: > 0 } exports)
            {
                throw new StorageException(StorageError.Busy, $"{volume} is exported read-write ({string.Join(", ", exports)}); a replica target is written by replication alone: delete those exports first");
            }

            // The kept snapshot and the record that makes the volume a replica are one commit: a
            // crash leaves either the volume as it was, or a replica whose state is that snapshot.
            IncomingReplicaDto? record = null;
            var kept = _pool.CreateSnapshot(
                volume,
                SnapshotStreamReader.UniqueName(_pool, volume, $"{AcceptedPrefix}{DateTimeOffset.UtcNow.UtcDateTime:yyyyMMdd-HHmmss}"),
                bookkeeping: snapshot =>
                {
                    record = new IncomingReplicaDto(volume, partner, sourceVolume ?? volume, snapshot.Name, snapshot.CreatedAt, null, false) { LastSnapshotId = snapshot.Id };
                    return new Tidemark.Engine.Control.ControlBatch().Put(IncomingKind, volume, IncomingRecord.From(record));
                });
            _book.Accepted(record!);

            // A replica target from now on: its read-only exports serve the kept snapshot to new clients.
            ImageChanged(volume);

            return (FindIncoming(volume)!, kept);
        }
        finally
        {
            gate.Exit();
        }
    }

    /// <summary>Writes the granule hashes of a scan base under the scan's key, all of them, in order (16 bytes per 64 KiB).</summary>
    public async Task WriteGranuleHashesAsync(string volume, Guid scanBase, long key, Stream output, CancellationToken cancellationToken)
    {
        var device = OpenScanBase(volume, scanBase);
        var scan = new HashScan(key);
        var count = HashScan.GranuleCount(device.SizeBytes);
        const int Batch = 4096; // 256 MiB of the volume, 64 KiB of hashes
        var hashes = new byte[Batch * HashScan.HashBytes];
        for (long first = 0; first < count; first += Batch)
        {
            var n = (int)Math.Min(Batch, count - first);
            await scan.GranuleHashesAsync(device, first, n, hashes, cancellationToken: cancellationToken);
            await output.WriteAsync(hashes.AsMemory(0, n * HashScan.HashBytes), cancellationToken);
        }
    }

    /// <summary>Writes the 16 block hashes of each granule named in <paramref name="granules"/> (little-endian indexes), in that order.</summary>
    public async Task WriteBlockHashesAsync(string volume, Guid scanBase, long key, Stream granules, Stream output, CancellationToken cancellationToken)
    {
        var device = OpenScanBase(volume, scanBase);
        var scan = new HashScan(key);
        var count = HashScan.GranuleCount(device.SizeBytes);
        var buffer = new byte[HashScan.GranuleBytes];
        var index = new byte[8];
        var hashes = new byte[HashScan.HashBytes * HashScan.BlocksPerGranule];
        while (await ReadIndexAsync(granules, index, cancellationToken))
        {
            var granule = System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(index);
            if (granule < 0 || granule >= count)
            {
                throw new StorageException(StorageError.InvalidArgument, $"granule {granule} is outside {volume} ({count} granules)");
            }

            scan.BlockHashes(device, granule, hashes, buffer);
            await output.WriteAsync(hashes, cancellationToken);
        }

        static async Task<bool> ReadIndexAsync(Stream input, byte[] index, CancellationToken ct)
        {
            var read = await input.ReadAtLeastAsync(index, index.Length, throwOnEndOfStream: false, ct);
            return read == index.Length
                ? true
                : read == 0 ? false : throw new StorageException(StorageError.InvalidArgument, "a granule index was cut short");
        }
    }

    private SnapshotDevice OpenScanBase(string volume, Guid scanBase) =>
        _pool.TryGetVolume(volume, out _) && _pool.FindSnapshotById(volume, scanBase) is { } snapshot
            ? _pool.OpenSnapshot(snapshot.Address)
            : throw new StorageException(StorageError.NotFound, $"{volume} has no scan base {scanBase}; start the scan again");
}
