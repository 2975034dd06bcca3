using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text.Json;

namespace Tidemark.Engine.Control;

/// <summary>
/// One kind of control-plane record kept in the pool's metadata store (exports, policies, jobs...):
/// its persisted name, the record type, and the version of that type's layout. On disk a record is
/// [crc32:u32][envelope:u16][version:u16][json]; the CRC-32 covers everything after it. A record of a
/// newer version than <see cref="Version"/> is refused (a newer build wrote it); an older one goes
/// through <paramref name="upgrade"/>. See docs/adr/0011-control-plane-state.md.
/// </summary>
/// <param name="name">Persisted in every key of this kind: never rename. 1-32 of a-z, 0-9 and '-'.</param>
/// <param name="version">The layout version this build writes; bump it when a field changes meaning or is removed.</param>
/// <param name="upgrade">Reads a record of an older version (given as its version and JSON); null when there is none.</param>
/// <param name="json">Serializer options; default: web defaults (camelCase).</param>
public sealed class ControlKind<T>(string name, int version, Func<int, JsonElement, T>? upgrade = null, JsonSerializerOptions? json = null)
    where T : class
{
    internal const int EnvelopeBytes = 8;

    // The envelope's own layout; a different value is a record from a build that changed the envelope.
    internal const ushort Envelope = 1;

    private static readonly JsonSerializerOptions DefaultJson = new(JsonSerializerDefaults.Web);

    private readonly JsonSerializerOptions _json = json ?? DefaultJson;

    public string Name { get; } = ControlKeys.CheckKind(name);

    public int Version { get; } = version is > 0 and <= ushort.MaxValue
        ? version
        : throw new ArgumentOutOfRangeException(nameof(version), version, "a control record version is 1-65535");

    /// <summary>The stored bytes of <paramref name="record"/> (public for golden tests of the owners' records).</summary>
    public byte[] Encode(T record)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(record, _json);
        var bytes = new byte[EnvelopeBytes + json.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), Envelope);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(6), (ushort)Version);
        json.CopyTo(bytes, EnvelopeBytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, Crc32.HashToUInt32(bytes.AsSpan(4)));
        return bytes;
    }

    /// <summary>Reads stored bytes, checking checksum and version; <paramref name="recordName"/> is for messages.</summary>
    public T Decode(ReadOnlySpan<byte> bytes, string recordName)
    {
        var what = $"the {Name} record '{recordName}'";
        if (bytes.Length < EnvelopeBytes || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Crc32.HashToUInt32(bytes[4..]))
        {
            throw new StorageException(StorageError.Corrupt, $"{what} fails its checksum; run 'tidemark verify' and restore the pool metadata from a replica or backup");
        }

        var envelope = BinaryPrimitives.ReadUInt16LittleEndian(bytes[4..]);
        var version = BinaryPrimitives.ReadUInt16LittleEndian(bytes[6..]);
        if (envelope != Envelope || version > Version)
        {
            throw new StorageException(
                StorageError.Unsupported,
                $"{what} has layout {envelope}.{version}, written by a newer Tidemark; this build reads layout {Envelope}.{Version}. Run the newer Tidemark (a downgrade cannot read it)");
        }

        try
        {
            if (version < Version)
            {
                using var document = JsonDocument.Parse(bytes[EnvelopeBytes..].ToArray());
                return upgrade is not null
                    ? upgrade(version, document.RootElement)
                    : throw new StorageException(StorageError.Unsupported, $"{what} has version {version}, older than this build reads ({Version}); open the pool once with the Tidemark release before this one, which upgrades it");
            }

            return JsonSerializer.Deserialize<T>(bytes[EnvelopeBytes..], _json)
                ?? throw new StorageException(StorageError.Corrupt, $"{what} is empty");
        }
        catch (JsonException ex)
        {
            throw new StorageException(StorageError.Corrupt, $"{what} passes its checksum but is not a valid version {version} record ({ex.Message}); the build that wrote it is broken, report it", ex);
        }
    }
}
