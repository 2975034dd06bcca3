using System.Globalization;

namespace Tidemark;

/// <summary>Parses and formats sizes in binary units as administrators type them: 10G, 512M, 4096, 1.5T.</summary>
public static class ByteSize
{
    private static readonly string[] Units = ["", "K", "M", "G", "T", "P"];

    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        var s = text.Trim();
        var shift = 0;
        var last = char.ToUpperInvariant(s[^1]);
        if (last == 'B' && s.Length > 1)
        {
            s = s[..^1];
            if (s.EndsWith('i') || s.EndsWith('I'))
            {
                s = s[..^1];
            }

            last = char.ToUpperInvariant(s[^1]);
        }

        var unit = Array.IndexOf(Units, last.ToString());
        if (unit > 0)
        {
            shift = unit * 10;
            s = s[..^1];
        }

        if (!decimal.TryParse(s, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value) || value < 0)
        {
            return false;
        }

        // 1L << shift, not Math.Pow: a double converted to decimal keeps 15 significant digits, which
        // turned 1P (16 digits) into 1125899906842620 bytes.
        var scaled = value * (1L << shift);
        if (scaled > long.MaxValue || scaled != decimal.Truncate(scaled))
        {
            return false;
        }

        bytes = (long)scaled;
        return true;
    }

    public static long Parse(string text) =>
        TryParse(text, out var bytes)
            ? bytes
            : throw new StorageException(StorageError.InvalidArgument, $"'{text}' is not a size; write it like 10G, 512M, 4K or a number of bytes");

    public static string Format(long bytes)
    {
        var value = (double)bytes;
        var unit = 0;
        while (Math.Abs(value) >= 1024 && unit < Units.Length - 1)
        {
            value /= 1024;
            unit++;
        }

        return unit == 0
            ? bytes.ToString(CultureInfo.InvariantCulture)
            : value.ToString(value >= 100 || value == Math.Floor(value) ? "0" : "0.#", CultureInfo.InvariantCulture) + Units[unit];
    }
}
