using System.Buffers;
using System.Text;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// RFC 7143 6.1: text key=value pairs, each terminated by a NUL. Keys are at most 63 bytes, values at
/// most 255 (8192 for a few, RFC 7143 6.1); anything else is a format error.
/// </summary>
public static class TextParameters
{
    public const int MaxKeyBytes = 63;
    public const int MaxValueBytes = 8192;

    public static bool TryParse(ReadOnlySpan<byte> text, List<KeyValuePair<string, string>> pairs)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        while (!text.IsEmpty)
        {
            var end = text.IndexOf((byte)0);
            var item = end < 0 ? text : text[..end];
            text = end < 0 ? default : text[(end + 1)..];
            if (item.IsEmpty)
            {
                // Trailing NUL padding.
                continue;
            }

            var eq = item.IndexOf((byte)'=');
            if (eq <= 0 || eq > MaxKeyBytes || item.Length - eq - 1 > MaxValueBytes)
            {
                return false;
            }

            pairs.Add(new(Encoding.UTF8.GetString(item[..eq]), Encoding.UTF8.GetString(item[(eq + 1)..])));
        }

        return true;
    }

    public static void Append(IBufferWriter<byte> output, string key, string value)
    {
        ArgumentNullException.ThrowIfNull(output);
        var n = Encoding.UTF8.GetByteCount(key) + 1 + Encoding.UTF8.GetByteCount(value) + 1;
        var span = output.GetSpan(n);
        var p = Encoding.UTF8.GetBytes(key, span);
        span[p++] = (byte)'=';
        p += Encoding.UTF8.GetBytes(value, span[p..]);
        span[p++] = 0;
        output.Advance(p);
    }
}
