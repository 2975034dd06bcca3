using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tidemark.Replication;

/// <summary>
/// What a snapshot stream carries (docs/STREAM-FORMAT.md): the source, the snapshot it recreates and
/// the snapshot it builds on (none for a full stream), and how many bytes of ranges it covers, known
/// before the first record is sent.
/// </summary>
public sealed record StreamHeader(
    int FormatVersion,
    Guid StreamId,
    Guid SourcePool,
    string Volume,
    long SizeBytes,
    int LogicalBlockSizeBytes,
    Guid SnapshotId,
    string SnapshotName,
    DateTimeOffset SnapshotCreatedAt,
    Guid? BaseSnapshotId,
    string? BaseSnapshotName,
    long RangeBytes,
    long ResumeOffset,
    DateTimeOffset CreatedAt)
{
    public bool IsIncremental => BaseSnapshotId is not null;
}

internal enum RecordType : byte
{
    Data = 1,
    Zero = 2,
    End = 3,
}

internal enum Codec : byte
{
    None = 0,
    Zstd = 1,
}

/// <summary>The byte layout shared by writer and reader; every integer little-endian.</summary>
internal static class StreamFormat
{
    public const int Version = 1;
    public const int MaxRecordBytes = 1 << 20;
    public const int MaxHeaderJsonBytes = 64 * 1024;
    public const int RecordHeaderBytes = 1 + 8 + 8 + 4 + 1 + 4; // type, index, offset, length, codec, payload length
    public const int EndPayloadBytes = 32;
    public static readonly byte[] Magic = "TDMKSTRM"u8.ToArray();

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        RespectNullableAnnotations = true,
    };

    /// <summary>Record checksums are seeded with the stream id: a record spliced in from another stream does not verify.</summary>
    public static long Seed(Guid streamId)
    {
        Span<byte> id = stackalloc byte[16];
        streamId.TryWriteBytes(id);
        return (long)XxHash64.HashToUInt64(id);
    }

    public static ulong RecordChecksum(long seed, ReadOnlySpan<byte> recordHeader, ReadOnlySpan<byte> content)
    {
        var hash = new XxHash64(seed);
        hash.Append(recordHeader);
        hash.Append(content);
        return hash.GetCurrentHashAsUInt64();
    }

    public static void WriteRecordHeader(Span<byte> destination, RecordType type, ulong index, long offset, int length, Codec codec, int payloadLength)
    {
        destination[0] = (byte)type;
        BinaryPrimitives.WriteUInt64LittleEndian(destination[1..], index);
        BinaryPrimitives.WriteInt64LittleEndian(destination[9..], offset);
        BinaryPrimitives.WriteInt32LittleEndian(destination[17..], length);
        destination[21] = (byte)codec;
        BinaryPrimitives.WriteInt32LittleEndian(destination[22..], payloadLength);
    }
}
