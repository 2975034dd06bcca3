using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text.Json;
using Tidemark.Engine;
using ZstdSharp;

namespace Tidemark.Replication;

/// <summary>Options of an export: compression, and where to resume an interrupted transfer.</summary>
public sealed record StreamExportOptions
{
    /// <summary>zstd level 1-22; 0 sends blocks raw. Blocks that do not shrink are sent raw anyway.</summary>
    public int CompressionLevel { get; init; } = 3;

    /// <summary>Start after this volume offset (what the receiver reported as durably applied).</summary>
    public long ResumeOffset { get; init; }

    /// <summary>Called with the bytes of ranges covered so far (progress against <see cref="StreamHeader.RangeBytes"/>).</summary>
    public Action<long>? Progress { get; init; }

    /// <summary>Called once, before the first record, with the bytes of ranges a resume skips (sent by the interrupted attempt).</summary>
    public Action<long>? Resumed { get; init; }

    /// <summary>
    /// Send these ranges (sorted, not overlapping) instead of computing them, as an incremental stream
    /// on top of <see cref="RemoteBase"/>, a snapshot the receiving side has under that id and name
    /// (the differences a hash scan found against it; the sender need not have it).
    /// </summary>
    public IReadOnlyList<(long Offset, long Length)>? Ranges { get; init; }

    public (Guid Id, string Name)? RemoteBase { get; init; }
}

/// <summary>
/// Writes a snapshot as a stream: all of it (only allocated ranges; blocks of zeros are left out), or
/// what changed since an older snapshot of the same volume (the engine's diff at 4 KiB precision:
/// a changed block is sent alone, ranges that became zero as ZERO records). See docs/STREAM-FORMAT.md.
/// </summary>
public static class SnapshotStreamWriter
{
    private const int IncompressibleRun = 4;
    private const int SkipAfterIncompressibleRun = 8;

    /// <summary>
    /// The bytes of ranges a stream of <paramref name="snapshotAddress"/> (from <paramref name="baseAddress"/>,
    /// or full) covers: what a transfer will read and send, known before it starts (for an ETA).
    /// </summary>
    public static long RangeBytes(Pool pool, string snapshotAddress, string? baseAddress)
    {
        var snapshot = pool.GetSnapshot(snapshotAddress);
        var baseSnapshot = baseAddress is null ? null : pool.GetSnapshot(baseAddress);
        return Ranges(pool, snapshot, baseSnapshot, pool.OpenSnapshot(snapshotAddress)).Sum(r => r.Length);
    }

    private static List<(long Offset, long Length)> Ranges(Pool pool, SnapshotInfo snapshot, SnapshotInfo? baseSnapshot, SnapshotDevice device) =>
        baseSnapshot is null
            ? [.. AllocatedRanges(device)]
            : [.. pool.Diff(snapshot.Volume, baseSnapshot.Name, snapshot.Name).Select(r => (r.OffsetBytes, r.LengthBytes))];

    public static StreamHeader Write(Pool pool, string snapshotAddress, string? baseAddress, Stream output, StreamExportOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new StreamExportOptions();
        if (options.CompressionLevel is < 0 or > 22)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the zstd level must be 0 (off) to 22, not {options.CompressionLevel}");
        }

        var snapshot = pool.GetSnapshot(snapshotAddress);
        SnapshotInfo? baseSnapshot = null;
        if ((options.Ranges is null) != (options.RemoteBase is null) || (options.Ranges is not null && baseAddress is not null))
        {
            throw new ArgumentException("explicit ranges go with a remote base, instead of a base snapshot here", nameof(options));
        }

        if (baseAddress is not null)
        {
            baseSnapshot = pool.GetSnapshot(baseAddress);
            if (baseSnapshot.Volume != snapshot.Volume)
            {
                throw new StorageException(StorageError.InvalidArgument, $"{baseAddress} is not a snapshot of {snapshot.Volume}; an incremental stream goes between two snapshots of one volume");
            }

            if (baseSnapshot.CreatedAt > snapshot.CreatedAt)
            {
                throw new StorageException(StorageError.InvalidArgument, $"{baseAddress} is newer than {snapshotAddress}; the base of an incremental stream is the older snapshot");
            }
        }

        var device = pool.OpenSnapshot(snapshotAddress);
        var ranges = options.Ranges is { } given ? [.. given] : Ranges(pool, snapshot, baseSnapshot, device);
        var incremental = baseSnapshot is not null || options.RemoteBase is not null;
        if (options.ResumeOffset > 0)
        {
            options.Resumed?.Invoke(ranges.Sum(r => Math.Max(0, Math.Min(r.Length, options.ResumeOffset - r.Offset))));
        }

        var header = new StreamHeader(
            StreamFormat.Version,
            Guid.NewGuid(),
            pool.Id,
            snapshot.Volume,
            snapshot.SizeBytes,
            device.LogicalBlockSizeBytes,
            snapshot.Id,
            snapshot.Name,
            snapshot.CreatedAt,
            baseSnapshot?.Id ?? options.RemoteBase?.Id,
            baseSnapshot?.Name ?? options.RemoteBase?.Name,
            ranges.Sum(r => r.Length),
            options.ResumeOffset,
            DateTimeOffset.UtcNow);
        WriteHeader(output, header);

        var seed = StreamFormat.Seed(header.StreamId);
        var chain = new XxHash64(seed);
        using var compressor = options.CompressionLevel > 0 ? new Compressor(options.CompressionLevel) : null;
        var data = new byte[StreamFormat.MaxRecordBytes];
        var compressed = new byte[Compressor.GetCompressBound(StreamFormat.MaxRecordBytes)];
        Span<byte> recordHeader = stackalloc byte[StreamFormat.RecordHeaderBytes];
        Span<byte> checksum = stackalloc byte[8];
        ulong index = 0;
        long dataBytes = 0, zeroBytes = 0, covered = 0;

        // Early abort, as ZFS does: after a run of pieces zstd could not shrink (encrypted or
        // already compressed data), the next ones go raw without trying, then it tries again.
        var incompressible = 0;
        var skipCompression = 0;

        void Emit(RecordType type, long offset, int length, ReadOnlySpan<byte> content, Codec codec, ReadOnlySpan<byte> payload, Span<byte> recordHeader, Span<byte> checksum)
        {
            StreamFormat.WriteRecordHeader(recordHeader, type, index, offset, length, codec, payload.Length);
            var sum = StreamFormat.RecordChecksum(seed, recordHeader, content);
            BinaryPrimitives.WriteUInt64LittleEndian(checksum, sum);
            output.Write(recordHeader);
            output.Write(payload);
            output.Write(checksum);
            chain.Append(checksum);
            index++;
        }

        foreach (var (rangeOffset, rangeLength) in ranges)
        {
            for (var offset = rangeOffset; offset < rangeOffset + rangeLength; offset += StreamFormat.MaxRecordBytes)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var length = (int)Math.Min(StreamFormat.MaxRecordBytes, rangeOffset + rangeLength - offset);
                covered += length;
                if (offset + length <= options.ResumeOffset)
                {
                    continue;
                }

                var chunk = data.AsSpan(0, length);
                device.Read(offset, chunk);
                var block = 0;
                while (block < length)
                {
                    // Runs of all-zero blocks become one ZERO record (incremental) or nothing (full); the rest is data.
                    var zero = IsZero(chunk.Slice(block, Math.Min(4096, length - block)));
                    var end = block;
                    while (end < length && IsZero(chunk.Slice(end, Math.Min(4096, length - end))) == zero)
                    {
                        end += 4096;
                    }

                    end = Math.Min(end, length);
                    var piece = chunk[block..end];
                    if (zero)
                    {
                        if (incremental)
                        {
                            Emit(RecordType.Zero, offset + block, piece.Length, [], Codec.None, [], recordHeader, checksum);
                            zeroBytes += piece.Length;
                        }
                    }
                    else
                    {
                        var written = int.MaxValue;
                        if (compressor is not null && skipCompression == 0)
                        {
                            written = compressor.Wrap(piece, compressed);
                            incompressible = written < piece.Length - (piece.Length / 64) ? 0 : incompressible + 1;
                            if (incompressible >= IncompressibleRun)
                            {
                                skipCompression = SkipAfterIncompressibleRun;
                                incompressible = 0;
                            }
                        }
                        else if (skipCompression > 0)
                        {
                            skipCompression--;
                        }

                        if (written < piece.Length)
                        {
                            Emit(RecordType.Data, offset + block, piece.Length, piece, Codec.Zstd, compressed.AsSpan(0, written), recordHeader, checksum);
                        }
                        else
                        {
                            Emit(RecordType.Data, offset + block, piece.Length, piece, Codec.None, piece, recordHeader, checksum);
                        }

                        dataBytes += piece.Length;
                    }

                    block = end;
                }

                options.Progress?.Invoke(covered);
            }
        }

        Span<byte> summary = stackalloc byte[StreamFormat.EndPayloadBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(summary, index);
        BinaryPrimitives.WriteInt64LittleEndian(summary[8..], dataBytes);
        BinaryPrimitives.WriteInt64LittleEndian(summary[16..], zeroBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(summary[24..], chain.GetCurrentHashAsUInt64());
        Emit(RecordType.End, 0, 0, summary, Codec.None, summary, recordHeader, checksum);
        output.Flush();
        return header;
    }

    internal static void WriteHeader(Stream output, StreamHeader header)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(header, StreamFormat.Json);
        var bytes = new byte[StreamFormat.Magic.Length + 8 + json.Length + 8];
        StreamFormat.Magic.CopyTo(bytes, 0);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), StreamFormat.Version);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(12), json.Length);
        json.CopyTo(bytes, 16);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(16 + json.Length), XxHash64.HashToUInt64(bytes.AsSpan(0, 16 + json.Length)));
        output.Write(bytes);
    }

    private static List<(long Offset, long Length)> AllocatedRanges(SnapshotDevice device)
    {
        var result = new List<(long, long)>();
        var runs = new AllocationRun[256];
        var offset = 0L;
        while (offset < device.SizeBytes)
        {
            var n = device.GetAllocationStatus(offset, device.SizeBytes - offset, runs);
            foreach (var run in runs.AsSpan(0, n))
            {
                if (run.State == AllocationState.Allocated)
                {
                    result.Add((run.OffsetBytes, run.LengthBytes));
                }

                offset = run.OffsetBytes + run.LengthBytes;
            }
        }

        return result;
    }

    private static bool IsZero(ReadOnlySpan<byte> block) => !block.ContainsAnyExcept((byte)0);
}
