using System.Globalization;
using System.Net;

namespace Tidemark;

/// <summary>
/// The text forms of durations and endpoints that settings, replicas and partners share, parsed in
/// one place so "every 5m" on a replica and "receive-poll 50us" in the config file mean the same.
/// </summary>
public static class SettingText
{
    public static IPEndPoint ParseEndpoint(string text, string setting)
    {
        var colon = text.LastIndexOf(':');
        if (colon <= 0
            || !IPAddress.TryParse(text[..colon].Trim('[', ']'), out var address)
            || !int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port)
            || port > 65535)
        {
            throw new ArgumentException($"{setting} '{text}' is not an address; write it as IP:PORT, for example 127.0.0.1:8410");
        }

        return new IPEndPoint(address, port);
    }

    /// <summary>"50us", "250ms", "1s", "2m" or "1h".</summary>
    public static TimeSpan Duration(string text, string setting)
    {
        var t = text.Trim();
        var (number, unit) = t.EndsWith("us", StringComparison.Ordinal) ? (t[..^2], 0.001)
            : t.EndsWith("ms", StringComparison.Ordinal) ? (t[..^2], 1.0)
            : t.EndsWith('s') ? (t[..^1], 1000.0)
            : t.EndsWith('m') ? (t[..^1], 60_000.0)
            : t.EndsWith('h') ? (t[..^1], 3_600_000.0)
            : (t, -1.0);
        if (unit < 0 || !double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value <= 0 || value * unit > TimeSpan.FromDays(1).TotalMilliseconds)
        {
            throw new ArgumentException($"{setting} '{text}' is not a duration; write it like 500ms, 1s or 2m");
        }

        return TimeSpan.FromMilliseconds(value * unit);
    }

    public const int MaxExportNameLength = 255;

    /// <summary>An export name (NBD export, iSCSI target suffix): also checked for a replica's standby exports before they exist.</summary>
    public static void CheckExportName(string name)
    {
        var ok = name.Length is > 0 and <= MaxExportNameLength
            && char.IsAsciiLetterOrDigit(name[0])
            && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '@' or ':');
        if (!ok)
        {
            throw new StorageException(
                StorageError.InvalidName,
                $"'{name}' is not a valid export name: use 1-{MaxExportNameLength} letters, digits, '-', '_', '.', '@' or ':', starting with a letter or digit");
        }
    }
}
