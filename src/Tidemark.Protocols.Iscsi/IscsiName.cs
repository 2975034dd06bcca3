using System.Buffers;

namespace Tidemark.Protocols.Iscsi;

/// <summary>RFC 7143 4.2.7 / RFC 3722: iSCSI names are iqn., eui. or naa. forms of at most 223 bytes.</summary>
public static class IscsiName
{
    public const int MaxLengthBytes = 223;

    private static readonly SearchValues<char> _hex = SearchValues.Create("0123456789abcdefABCDEF");

    public static bool IsValid(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxLengthBytes)
        {
            return false;
        }

        if (name.StartsWith("iqn.", StringComparison.OrdinalIgnoreCase))
        {
            // iqn.YYYY-MM.reversed.domain[:unique]
            return name.Length > 12 && char.IsAsciiDigit(name[4]) && name[8] == '-' && name[11] == '.'
                && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or ':' or '_');
        }

        if (name.StartsWith("eui.", StringComparison.OrdinalIgnoreCase))
        {
            return name.Length == 20 && !name.AsSpan(4).ContainsAnyExcept(_hex);
        }

        return name.StartsWith("naa.", StringComparison.OrdinalIgnoreCase) && name.Length is 20 or 36
            && !name.AsSpan(4).ContainsAnyExcept(_hex);
    }
}
