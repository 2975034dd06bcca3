using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tidemark.Engine.Metadata;

/// <summary>
/// Persisted control records (pool, stores, volumes, lineages, snapshots, groups). Each is stored as
/// [crc32:u32][format:u16][json]: a torn or corrupt record fails its checksum and is reported as
/// <see cref="StorageError.Corrupt"/>, never used. Enum values and property names are persisted: never
/// renumber or rename; the layouts are frozen by tests/Tidemark.Engine.Tests/RecordGoldenTests.cs.
/// </summary>
internal static class RecordCodec
{
    public const ushort FormatVersion = 1;

    private static readonly JsonSerializerOptions Json = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public static byte[] Encode<T>(T record)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(record, Json);
        var bytes = new byte[6 + json.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), FormatVersion);
        json.CopyTo(bytes, 6);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, Crc32.HashToUInt32(bytes.AsSpan(4)));
        return bytes;
    }

    public static T Decode<T>(ReadOnlySpan<byte> bytes, string what)
    {
        if (bytes.Length < 6 || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Crc32.HashToUInt32(bytes[4..]))
        {
            throw new StorageException(StorageError.Corrupt, $"the metadata record of {what} fails its checksum; run 'tidemark verify' and restore the pool metadata from a replica or backup");
        }

        var version = BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]);
        if (version != FormatVersion)
        {
            throw new StorageException(
                StorageError.Unsupported,
                version > FormatVersion
                    ? $"the metadata record of {what} has record format {version}, written by a newer Tidemark; this build reads record format {FormatVersion}. Run the newer Tidemark (a downgrade cannot read it)"
                    : $"the metadata record of {what} has record format {version}, which no Tidemark writes (this build reads record format {FormatVersion}); the metadata is damaged: run 'tidemark verify'");
        }

        return JsonSerializer.Deserialize<T>(bytes[6..], Json)
            ?? throw new StorageException(StorageError.Corrupt, $"the metadata record of {what} is empty");
    }
}

internal sealed class PoolRecord
{
    public Guid PoolId { get; set; }

    public int FormatVersion { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    public uint NextLineage { get; set; } = 1;
}

internal sealed class StoreRecord
{
    public int Index { get; set; }

    public string Path { get; set; } = "";

    public StoreKind Kind { get; set; }

    public long CapacityBytes { get; set; }
}

internal sealed class VolumeRecord
{
    public Guid Id { get; set; }

    public string Name { get; set; } = "";

    public VolumeKind Kind { get; set; }

    public uint Lineage { get; set; }

    public long SizeBytes { get; set; }

    public int LogicalBlockSize { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>For views: "volume@snapshot" it was created from (informational; the lineage parent is the truth).</summary>
    public string? Origin { get; set; }

    /// <summary>Every lineage whose snapshots belong to this volume (the current one last; older ones after rollbacks).</summary>
    public List<uint> Lineages { get; set; } = [];
}

internal enum LineageState
{
    /// <summary>The live image of a volume or view: takes writes.</summary>
    Active = 0,

    /// <summary>Superseded by a rollback or left behind by a deleted volume: read-only, kept for its snapshots.</summary>
    Frozen = 1,

    /// <summary>Being deleted in steps; invisible, resumed after a restart.</summary>
    Deleting = 2,
}

internal sealed class LineageRecord
{
    public uint Id { get; set; }

    public Guid Volume { get; set; }

    public uint ParentLineage { get; set; }

    public ulong ParentEpoch { get; set; }

    /// <summary>The epoch live writes are born in; creating a snapshot records it and moves to the next.</summary>
    public ulong Epoch { get; set; } = 1;

    public LineageState State { get; set; }

    /// <summary>
    /// Blocks allocated in the parent's image at <see cref="ParentEpoch"/> when this lineage was made
    /// (0 for a root lineage; null when the parent snapshot predates counting).
    /// </summary>
    public long? BaseMappedBlocks { get; set; }
}

internal enum SnapshotState
{
    Active = 0,

    /// <summary>Deleted by the administrator but still needed by a view or a rolled-back volume; not listed.</summary>
    Hidden = 1,

    /// <summary>Its unique blocks are being freed; invisible, resumed after a restart.</summary>
    Deleting = 2,
}

internal sealed class SnapshotRecord
{
    public uint Lineage { get; set; }

    /// <summary>Stable identity, kept by copies of the snapshot on other pools (replication). Empty for snapshots made before ids: see <see cref="Pool"/>.</summary>
    public Guid Id { get; set; }

    /// <summary>Blocks allocated in the image this snapshot keeps (null for snapshots made before counting).</summary>
    public long? MappedBlocks { get; set; }

    public ulong Epoch { get; set; }

    public Guid Volume { get; set; }

    public string Name { get; set; } = "";

    public DateTimeOffset CreatedAt { get; set; }

    public long SizeBytes { get; set; }

    public SnapshotState State { get; set; }

    /// <summary>Locked against deletion until this instant (null: no dated hold).</summary>
    public DateTimeOffset? HoldUntil { get; set; }

    /// <summary>Locked against deletion until released.</summary>
    public bool Held { get; set; }

    public string? HoldReason { get; set; }

    /// <summary>Set when taken as part of a group snapshot: "group/snapshot".</summary>
    public string? GroupSnapshot { get; set; }
}

internal sealed class GroupRecord
{
    public string Name { get; set; } = "";

    public List<Guid> Members { get; set; } = [];

    public DateTimeOffset CreatedAt { get; set; }
}
