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

    public static string NameOf(ReadOnlySpan<byte> key, int prefixLength) => Encoding.UTF8.GetString(key[prefixLength..]);
}
