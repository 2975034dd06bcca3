using System.Buffers.Binary;

namespace Tidemark.Engine.Metadata;

/// <summary>
/// Key layout of the pool's metadata store. Every key starts with a one-byte table tag; integers are
/// big-endian so the store's byte order is numeric order. Tags are persisted: never renumber.
/// </summary>
internal static class Keys
{
    public const byte Pool = (byte)'P';        // P                          -> PoolRecord
    public const byte Store = (byte)'T';       // T store:u16                -> StoreRecord
    public const byte Bitmap = (byte)'A';      // A store:u16 chunk:u32      -> 4 KiB committed allocation bitmap
    public const byte Volume = (byte)'V';      // V id:guid(16)              -> VolumeRecord
    public const byte Lineage = (byte)'N';     // N lineage:u32              -> LineageRecord
    public const byte Snapshot = (byte)'S';    // S lineage:u32 epoch:u64    -> SnapshotRecord
    public const byte Group = (byte)'G';       // G name(utf8)               -> GroupRecord
    public const byte LivePage = (byte)'L';    // L lineage:u32 page:u64     -> MapPage (256 entries x 16 bytes)
    public const byte History = (byte)'H';     // H lineage:u32 block:u64 death:u64 -> MapEntry (the version that died)
    public const byte DeathIndex = (byte)'D';  // D lineage:u32 death:u64 block:u64 -> MapEntry (same record, by death)
    public const byte Counters = (byte)'C';    // C lineage:u32              -> own mapped:i64, overridden:i64 (see Lineage)
    public const byte Control = (byte)'X';     // X kind(ascii) 0 name(utf8) -> control-plane record (Control/ControlKeys.cs)

    public static byte[] PoolKey() => [Pool];

    public static byte[] StoreKey(int store)
    {
        var k = new byte[3];
        k[0] = Store;
        BinaryPrimitives.WriteUInt16BigEndian(k.AsSpan(1), (ushort)store);
        return k;
    }

    public static byte[] BitmapKey(int store, uint chunk)
    {
        var k = new byte[7];
        k[0] = Bitmap;
        BinaryPrimitives.WriteUInt16BigEndian(k.AsSpan(1), (ushort)store);
        BinaryPrimitives.WriteUInt32BigEndian(k.AsSpan(3), chunk);
        return k;
    }

    public static byte[] VolumeKey(Guid id)
    {
        var k = new byte[17];
        k[0] = Volume;
        id.TryWriteBytes(k.AsSpan(1), bigEndian: true, out _);
        return k;
    }

    public static byte[] LineageKey(uint lineage) => Prefix(Lineage, lineage);

    public static byte[] SnapshotKey(uint lineage, ulong epoch) => Key3(Snapshot, lineage, epoch);

    public static byte[] GroupKey(string name)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(name);
        var k = new byte[1 + bytes.Length];
        k[0] = Group;
        bytes.CopyTo(k, 1);
        return k;
    }

    public static byte[] LivePageKey(uint lineage, ulong page) => Key3(LivePage, lineage, page);

    public static void WriteHistoryKey(Span<byte> key, uint lineage, ulong block, ulong death)
    {
        key[0] = History;
        BinaryPrimitives.WriteUInt32BigEndian(key[1..], lineage);
        BinaryPrimitives.WriteUInt64BigEndian(key[5..], block);
        BinaryPrimitives.WriteUInt64BigEndian(key[13..], death);
    }

    public static void WriteDeathKey(Span<byte> key, uint lineage, ulong death, ulong block)
    {
        key[0] = DeathIndex;
        BinaryPrimitives.WriteUInt32BigEndian(key[1..], lineage);
        BinaryPrimitives.WriteUInt64BigEndian(key[5..], death);
        BinaryPrimitives.WriteUInt64BigEndian(key[13..], block);
    }

    public const int HistoryKeyBytes = 21;

    /// <summary>The first key of a table for one lineage (tag + lineage), for range scans.</summary>
    public static byte[] Prefix(byte tag, uint lineage)
    {
        var k = new byte[5];
        k[0] = tag;
        BinaryPrimitives.WriteUInt32BigEndian(k.AsSpan(1), lineage);
        return k;
    }

    public static byte[] Key3(byte tag, uint lineage, ulong value)
    {
        var k = new byte[13];
        k[0] = tag;
        BinaryPrimitives.WriteUInt32BigEndian(k.AsSpan(1), lineage);
        BinaryPrimitives.WriteUInt64BigEndian(k.AsSpan(5), value);
        return k;
    }

    public static void WriteKey3(Span<byte> key, byte tag, uint lineage, ulong value)
    {
        key[0] = tag;
        BinaryPrimitives.WriteUInt32BigEndian(key[1..], lineage);
        BinaryPrimitives.WriteUInt64BigEndian(key[5..], value);
    }

    public static uint ReadLineage(ReadOnlySpan<byte> key) => BinaryPrimitives.ReadUInt32BigEndian(key[1..]);

    public static ulong ReadU64At(ReadOnlySpan<byte> key, int offset) => BinaryPrimitives.ReadUInt64BigEndian(key[offset..]);
}
