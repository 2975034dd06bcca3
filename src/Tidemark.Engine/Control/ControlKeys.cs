using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine.Control;

/// <summary>
/// Keys of control records: [X][kind (ASCII)][0x00][name (UTF-8)], so the records of one kind are one
/// sorted range (by the name's bytes) and never collide with the engine's tables (Keys.cs).
/// </summary>
internal static class ControlKeys
{
    public const int MaxKindLength = 32;

    /// <summary>Names are what the server names things (exports, policies, job ids); long enough for any of them, small for a key.</summary>
    public const int MaxNameBytes = 1024;

    public static string CheckKind(string kind)
    {
        if (kind.Length is 0 or > MaxKindLength || !kind.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-'))
        {
            throw new ArgumentException($"'{kind}' is not a control record kind: use 1-{MaxKindLength} of a-z, 0-9 and '-'", nameof(kind));
        }

        return kind;
    }

    public static byte[] Prefix(string kind)
    {
        var k = new byte[kind.Length + 2];
        k[0] = Keys.Control;
        Encoding.ASCII.GetBytes(kind, k.AsSpan(1));
        return k;
    }

    public static byte[] Key(string kind, string name)
    {
        var nameBytes = Encoding.UTF8.GetByteCount(name);
        if (nameBytes is 0 or > MaxNameBytes || name.Contains('\0', StringComparison.Ordinal))
        {
            throw new StorageException(StorageError.InvalidName, $"'{name}' cannot name a {kind} record: use 1-{MaxNameBytes} bytes of UTF-8 without NUL");
        }

        var prefix = Prefix(kind);
        var k = new byte[prefix.Length + nameBytes];
        prefix.CopyTo(k, 0);
        Encoding.UTF8.GetBytes(name, k.AsSpan(prefix.Length));
        return k;
    }

    /// <summary>
    /// What is wrong with a stored control record that any build can tell without knowing its type
    /// (for verify): a malformed key, a torn or corrupt value, an unknown envelope; null when sound.
    /// </summary>
    public static string? CheckStored(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        var separator = key.IndexOf((byte)0);
        var kindLength = separator - 1;
        if (separator < 2 || kindLength > MaxKindLength || key.Length - separator - 1 is 0 or > MaxNameBytes)
        {
            return $"a control record has a malformed key ({Convert.ToHexString(key[..Math.Min(key.Length, 48)])}); it is ignored by every reader: restore the pool metadata from a backup if settings are missing";
        }

        var kind = Encoding.ASCII.GetString(key[1..separator]);
        var name = Encoding.UTF8.GetString(key[(separator + 1)..]);
        if (value.Length < ControlKind<object>.EnvelopeBytes || BinaryPrimitives.ReadUInt32LittleEndian(value) != Crc32.HashToUInt32(value[4..]))
        {
            return $"the {kind} record '{name}' fails its checksum; recreate it (or restore the pool metadata from a backup)";
        }

        var envelope = BinaryPrimitives.ReadUInt16LittleEndian(value[4..]);
        return envelope == ControlKind<object>.Envelope ? null : $"the {kind} record '{name}' has envelope {envelope}, which this build does not read (a newer Tidemark wrote it)";
    }

    public static string NameOf(ReadOnlySpan<byte> key, int prefixLength) => Encoding.UTF8.GetString(key[prefixLength..]);
}
