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

    /// <summary>
    /// The longest duration a setting takes unless it names its own bound: most of them (timeouts,
    /// retry delays, replica intervals) make no sense past a day, and a typo such as "10h" for "10s"
    /// should not pass either; a setting that needs longer (an RPO alert) passes its own maximum.
    /// </summary>
    public static readonly TimeSpan DefaultMaxDuration = TimeSpan.FromDays(1);

    /// <summary>"50us", "250ms", "1s", "2m", "1h" or "2d", more than zero and at most <paramref name="max"/> (default <see cref="DefaultMaxDuration"/>).</summary>
    public static TimeSpan Duration(string text, string setting, TimeSpan? max = null)
    {
        var limit = max ?? DefaultMaxDuration;
        var t = text.Trim();
        var (number, unit) = t.EndsWith("us", StringComparison.Ordinal) ? (t[..^2], 0.001)
            : t.EndsWith("ms", StringComparison.Ordinal) ? (t[..^2], 1.0)
            : t.EndsWith('s') ? (t[..^1], 1000.0)
            : t.EndsWith('m') ? (t[..^1], 60_000.0)
            : t.EndsWith('h') ? (t[..^1], 3_600_000.0)
            : t.EndsWith('d') ? (t[..^1], 86_400_000.0)
            : (t, -1.0);

        // !(value > 0) also refuses NaN, which TimeSpan would reject with a message naming no setting.
        if (unit < 0 || !double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !(value > 0))
        {
            throw new ArgumentException($"{setting} '{text}' is not a duration; write it like 500ms, 1s, 2m, 1h or 2d");
        }

        if (value * unit > limit.TotalMilliseconds)
        {
            throw new ArgumentException($"{setting} '{text}' is longer than {Text(limit)}, the most it may be");
        }

        return TimeSpan.FromMilliseconds(value * unit);
    }

    /// <summary>A span as <see cref="Duration"/> reads it back: whole days, hours, minutes or seconds, else milliseconds.</summary>
    public static string Text(TimeSpan span)
    {
        var ms = (long)span.TotalMilliseconds;
        return ms % 86_400_000 == 0 ? (ms / 86_400_000).ToString(CultureInfo.InvariantCulture) + "d"
            : ms % 3_600_000 == 0 ? (ms / 3_600_000).ToString(CultureInfo.InvariantCulture) + "h"
            : ms % 60_000 == 0 ? (ms / 60_000).ToString(CultureInfo.InvariantCulture) + "m"
            : ms % 1000 == 0 ? (ms / 1000).ToString(CultureInfo.InvariantCulture) + "s"
            : ms.ToString(CultureInfo.InvariantCulture) + "ms";
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
