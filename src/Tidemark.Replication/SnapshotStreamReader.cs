using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text.Json;
using Tidemark.Engine;
using ZstdSharp;

namespace Tidemark.Replication;

/// <summary>How an import treats the target and a failure.</summary>
public sealed record StreamImportOptions
{
    /// <summary>Import under this volume name instead of the stream's.</summary>
    public string? Volume { get; init; }

    /// <summary>
    /// Keep what was applied when the stream breaks off (a network transfer that will resume), instead
    /// of discarding it. The volume's snapshots are untouched either way; only a complete, verified
    /// stream creates the new one.
    /// </summary>
    public bool KeepPartial { get; init; }

    /// <summary>The stream resumes an earlier, interrupted one: the live volume already holds its first part.</summary>
    public bool Resume { get; init; }

    /// <summary>
    /// An incremental stream into a volume that changed since the stream's base first rolls the volume
    /// back to the base, keeping its current state as a snapshot (fail-back: the old primary's writes
    /// after the common snapshot are reverted, not lost). Without it such a volume is refused.
    /// </summary>
    public bool RollbackToBase { get; init; }

    /// <summary>
    /// Apply and verify the whole stream but create no snapshot: the caller commits several volumes'
    /// snapshots together (a replicated group) once every member's stream is in.
    /// </summary>
    public bool DeferSnapshot { get; init; }

    /// <summary>
    /// The new snapshot takes the time it was taken at its source (the stream header's
    /// SnapshotCreatedAt) instead of the import time: a file-based import (mirror-and-ship) recreates
    /// the snapshot as it was. Off for replication, whose receiver orders its snapshots by local time.
    /// </summary>
    public bool KeepSnapshotTime { get; init; }

    public Action<long>? Progress { get; init; }

    /// <summary>Called once the header was read and checked, before any record is applied.</summary>
    public Action<StreamHeader>? HeaderRead { get; init; }

    /// <summary>
    /// The records that say what the new snapshot is (a replica's bookkeeping), committed with it in
    /// one metadata transaction: after a crash the snapshot and its records are both there or neither
    /// (see <see cref="Pool.CreateSnapshot"/> for what it may do). Unused with <see cref="DeferSnapshot"/>.
    /// </summary>
    public Func<StreamHeader, SnapshotInfo, Tidemark.Engine.Control.ControlBatch>? Bookkeeping { get; init; }
}

/// <summary>What an import did; <see cref="AppliedOffset"/> is where a resumed transfer starts after a failure.</summary>
/// <see cref="KeptState"/> is the snapshot that keeps what the volume held before a
/// <see cref="StreamImportOptions.RollbackToBase"/> import reverted it.
public sealed record StreamImportResult(StreamHeader Header, SnapshotInfo? Snapshot, long Records, long DataBytes, long ZeroBytes, long AppliedOffset, SnapshotInfo? KeptState = null);

/// <summary>
/// Applies a snapshot stream to a pool. Every record is verified before it is written, the end record
/// checks the count and the chain of checksums, and only then (after a flush) is the snapshot created,
/// with the source's id and name: the target's newest snapshot is always complete. A damaged,
/// truncated, replayed or mismatched stream is refused with a message that says what was wrong, and
/// the target keeps its snapshots; the half-applied live state is discarded unless the caller keeps it
/// to resume.
/// </summary>
public static class SnapshotStreamReader
{
    public static StreamImportResult Import(Pool pool, Stream input, StreamImportOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new StreamImportOptions();
        var header = ReadHeader(input);
        var name = options.Volume ?? header.Volume;
        if (pool.TryGetVolume(name, out _) && pool.FindSnapshotById(name, header.SnapshotId) is { } replayed)
        {
            throw new StorageException(StorageError.AlreadyExists, $"{name} already has snapshot {replayed.Name} from this stream (id {header.SnapshotId}): an old or replayed stream; nothing changed");
        }

        var created = false;
        SnapshotInfo? baseSnapshot = null;
        SnapshotInfo? kept = null;
        if (!header.IsIncremental)
        {
            if (pool.TryGetVolume(name, out var existing))
            {
                if (!options.Resume)
                {
                    throw new StorageException(StorageError.AlreadyExists, $"volume {name} exists; a full stream creates its volume: import under another name (--volume) or send an incremental stream based on a snapshot {name} has");
                }

                if (existing.SizeBytes != header.SizeBytes)
                {
                    throw new StorageException(StorageError.InvalidArgument, $"volume {name} is not the one this stream resumes (size {existing.SizeBytes}, stream {header.SizeBytes})");
                }
            }
            else
            {
                pool.CreateVolume(name, header.SizeBytes, header.LogicalBlockSizeBytes);
                created = true;
            }
        }
        else
        {
            var volume = pool.GetVolume(name);
            baseSnapshot = pool.FindSnapshotById(name, header.BaseSnapshotId!.Value)
                ?? throw new StorageException(StorageError.NotFound, $"{name} has no snapshot {header.BaseSnapshotName} (id {header.BaseSnapshotId}) that this stream builds on; send a full stream or one based on a snapshot both sides have");
            if (!options.Resume && pool.Diff(name, baseSnapshot.Name, null).Count > 0)
            {
                if (!options.RollbackToBase)
                {
                    throw new BaseChangedException($"{name} changed since {baseSnapshot.Address}; roll it back to that snapshot first ('tidemark volume rollback {name} {baseSnapshot.Name}')", baseSnapshot.Address);
                }

                // Fail-back: what this side wrote after the common snapshot is reverted, and kept.
                kept = pool.Rollback(name, baseSnapshot.Name, keepCurrentState: true);
                volume = pool.GetVolume(name);
            }

            if (volume.SizeBytes > header.SizeBytes)
            {
                throw new StorageException(StorageError.InvalidArgument, $"{name} is larger ({volume.SizeBytes} bytes) than the snapshot the stream recreates ({header.SizeBytes}); volumes cannot shrink");
            }
        }

        options.HeaderRead?.Invoke(header);
        var target = pool.GetVolume(name);
        long applied = header.ResumeOffset;
        try
        {
            if (target.SizeBytes < header.SizeBytes)
            {
                pool.ResizeVolume(name, header.SizeBytes);
            }

            var (records, dataBytes, zeroBytes) = ApplyRecords(input, header, target, options, ref applied, cancellationToken);
            target.Flush();
            var bookkeeping = options.Bookkeeping;
            var snapshot = options.DeferSnapshot ? null : pool.CreateSnapshot(
                name,
                UniqueName(pool, name, header.SnapshotName),
                header.SnapshotId,
                options.KeepSnapshotTime ? header.SnapshotCreatedAt : null,
                bookkeeping is null ? null : cut => bookkeeping(header, cut));
            return new StreamImportResult(header, snapshot, records, dataBytes, zeroBytes, header.SizeBytes, kept);
        }
        catch (Exception ex) when (ex is StorageException or IOException or EndOfStreamException or ZstdException or OperationCanceledException)
        {
            if (options.KeepPartial)
            {
                target.Flush();
                throw new StreamImportException(ex, applied) { SnapshotId = header.SnapshotId };
            }

            if (created)
            {
                pool.DeleteVolume(name);
            }
            else if (baseSnapshot is not null)
            {
                pool.Rollback(name, baseSnapshot.Name, keepCurrentState: false);
            }

            throw new StreamImportException(ex, 0);
        }
    }

    /// <summary>Reads and checks the header alone (what `tidemark snapshot import --dry-run` would show).</summary>
    public static StreamHeader ReadHeader(Stream input)
    {
        var fixedPart = new byte[16];
        ReadExactly(input, fixedPart, "header");
        if (!fixedPart.AsSpan(0, 8).SequenceEqual(StreamFormat.Magic))
        {
            throw new StorageException(StorageError.InvalidArgument, "this is not a Tidemark snapshot stream (wrong magic); give a file made by 'tidemark snapshot export'");
        }

        var version = BinaryPrimitives.ReadUInt16LittleEndian(fixedPart.AsSpan(8));
        if (version != StreamFormat.Version)
        {
            throw new StorageException(StorageError.Unsupported, $"stream format version {version} is not supported by this Tidemark (it reads version {StreamFormat.Version})");
        }

        var jsonLength = BinaryPrimitives.ReadInt32LittleEndian(fixedPart.AsSpan(12));
        if (jsonLength is <= 0 or > StreamFormat.MaxHeaderJsonBytes)
        {
            throw Damaged($"header length {jsonLength} is impossible");
        }

        var rest = new byte[jsonLength + 8];
        ReadExactly(input, rest, "header");
        var hash = new XxHash64();
        hash.Append(fixedPart);
        hash.Append(rest.AsSpan(0, jsonLength));
        if (hash.GetCurrentHashAsUInt64() != BinaryPrimitives.ReadUInt64LittleEndian(rest.AsSpan(jsonLength)))
        {
            throw Damaged("the header's checksum does not match");
        }

        try
        {
            var header = JsonSerializer.Deserialize<StreamHeader>(rest.AsSpan(0, jsonLength), StreamFormat.Json) ?? throw Damaged("the header is empty");
            if (header.SizeBytes <= 0 || header.LogicalBlockSizeBytes is not (512 or 4096) || header.RangeBytes < 0 || header.ResumeOffset < 0)
            {
                throw Damaged("the header's sizes are impossible");
            }

            return header;
        }
        catch (JsonException ex)
        {
            throw Damaged($"the header does not decode ({ex.Message})");
        }
    }

    private static (long Records, long DataBytes, long ZeroBytes) ApplyRecords(Stream input, StreamHeader header, Volume target, StreamImportOptions options, ref long applied, CancellationToken cancellationToken)
    {
        var seed = StreamFormat.Seed(header.StreamId);
        var chain = new XxHash64(seed);
        using var decompressor = new Decompressor();
        var recordHeader = new byte[StreamFormat.RecordHeaderBytes];
        var payload = new byte[StreamFormat.MaxRecordBytes];
        var data = new byte[StreamFormat.MaxRecordBytes];
        var checksum = new byte[8];
        ulong expected = 0;
        long dataBytes = 0, zeroBytes = 0, lastEnd = header.ResumeOffset;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            ReadExactly(input, recordHeader, $"record {expected}");
            var type = (RecordType)recordHeader[0];
            var index = BinaryPrimitives.ReadUInt64LittleEndian(recordHeader.AsSpan(1));
            var offset = BinaryPrimitives.ReadInt64LittleEndian(recordHeader.AsSpan(9));
            var length = BinaryPrimitives.ReadInt32LittleEndian(recordHeader.AsSpan(17));
            var codec = (Codec)recordHeader[21];
            var payloadLength = BinaryPrimitives.ReadInt32LittleEndian(recordHeader.AsSpan(22));
            if (index != expected)
            {
                throw Damaged($"record {index} arrived where record {expected} was due (reordered or spliced)");
            }

            if (payloadLength is < 0 or > StreamFormat.MaxRecordBytes || length is < 0 or > StreamFormat.MaxRecordBytes)
            {
                throw Damaged($"record {index} has an impossible length");
            }

            ReadExactly(input, payload.AsSpan(0, payloadLength), $"record {index}");
            ReadExactly(input, checksum, $"record {index}");
            var content = Content(type, codec, payload, payloadLength, length, data, decompressor, index);
            if (StreamFormat.RecordChecksum(seed, recordHeader, content) != BinaryPrimitives.ReadUInt64LittleEndian(checksum))
            {
                throw Damaged($"record {index} fails its checksum");
            }

            if (type == RecordType.End)
            {
                CheckEnd(content, expected, dataBytes, zeroBytes, chain);
                return ((long)expected, dataBytes, zeroBytes);
            }

            chain.Append(checksum);
            if (offset < lastEnd || offset + length > header.SizeBytes || offset % header.LogicalBlockSizeBytes != 0 || length % header.LogicalBlockSizeBytes != 0)
            {
                throw Damaged($"record {index} covers {offset}+{length}, out of order or outside the volume");
            }

            if (type == RecordType.Data)
            {
                target.Write(offset, content, forceUnitAccess: false);
                dataBytes += length;
            }
            else
            {
                target.WriteZeroes(offset, length, mayUnmap: true);
                zeroBytes += length;
            }

            lastEnd = offset + length;
            applied = lastEnd;
            options.Progress?.Invoke(lastEnd);
            expected++;
        }
    }

    /// <summary>A record's content, decompressed if it is; a layout that fits no record type is damage.</summary>
    private static ReadOnlySpan<byte> Content(RecordType type, Codec codec, byte[] payload, int payloadLength, int length, byte[] data, Decompressor decompressor, ulong index)
    {
        switch (type)
        {
            case RecordType.Data when codec == Codec.None && payloadLength == length:
                return payload.AsSpan(0, length);
            case RecordType.Data when codec == Codec.Zstd:
                int unpacked;
                try
                {
                    unpacked = decompressor.Unwrap(payload.AsSpan(0, payloadLength), data);
                }
                catch (ZstdException)
                {
                    throw Damaged($"record {index} does not decompress");
                }

                return unpacked == length ? data.AsSpan(0, length) : throw Damaged($"record {index} decompresses to {unpacked} bytes, not {length}");
            case RecordType.Zero when payloadLength == 0:
            case RecordType.End when payloadLength == StreamFormat.EndPayloadBytes:
                return payload.AsSpan(0, payloadLength);
            default:
                throw Damaged($"record {index} has an unknown type or layout");
        }
    }

    /// <summary>The end record repeats the count, the data and zero bytes and the checksum chain: a stream cut or spliced anywhere does not match.</summary>
    private static void CheckEnd(ReadOnlySpan<byte> content, ulong expected, long dataBytes, long zeroBytes, XxHash64 chain)
    {
        var count = BinaryPrimitives.ReadUInt64LittleEndian(content);
        var endData = BinaryPrimitives.ReadInt64LittleEndian(content[8..]);
        var endZero = BinaryPrimitives.ReadInt64LittleEndian(content[16..]);
        var endChain = BinaryPrimitives.ReadUInt64LittleEndian(content[24..]);
        if (count != expected || endData != dataBytes || endZero != zeroBytes || endChain != chain.GetCurrentHashAsUInt64())
        {
            throw Damaged("the end record does not match the records received");
        }
    }

    /// <summary>The stream's snapshot name, or NAME-2, NAME-3... when the volume has a snapshot called that already.</summary>
    public static string UniqueName(Pool pool, string volume, string name)
    {
        var names = pool.ListSnapshots(volume).Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var candidate = name;
        for (var i = 2; names.Contains(candidate); i++)
        {
            candidate = $"{name}-{i}";
        }

        return candidate;
    }

    private static void ReadExactly(Stream input, Span<byte> buffer, string what)
    {
        var read = input.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        if (read < buffer.Length)
        {
            throw Damaged($"the stream ends inside {what} (truncated)");
        }
    }

    private static StorageException Damaged(string what) =>
        new(StorageError.Corrupt, $"the snapshot stream is damaged: {what}; nothing was committed, the target's snapshots are unchanged");
}

/// <summary>An import failed; <see cref="AppliedOffset"/> says how far a resumed transfer may skip (0: start over).</summary>
public sealed class StreamImportException : Exception
{
    public StreamImportException(Exception inner, long appliedOffset)
        : base(inner.Message, inner)
    {
        AppliedOffset = appliedOffset;
        Error = inner is StorageException s ? s.Error : StorageError.IoError;
    }

    public StreamImportException()
    {
    }

    public StreamImportException(string message)
        : base(message)
    {
    }

    public StreamImportException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public long AppliedOffset { get; }

    /// <summary>The snapshot the failed stream was bringing, when its header was read (what a resume must match).</summary>
    public Guid? SnapshotId { get; init; }

    public StorageError Error { get; }
}
