using System.Globalization;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// What a Maildir file name carries (cr.yp.to/proto/maildir.html; Dovecot's extensions):
/// "1795534881.M43940P30421.host,S=602,W=622:2,FSa" — the size after S=, and after ":2," the flag
/// letters (D draft, F flagged, R answered, S seen, T trashed = \Deleted) and Dovecot's keyword
/// letters a..z, indexes into the folder's dovecot-keywords file.
/// </summary>
public readonly record struct MaildirFileName(long? SizeBytes, IReadOnlyList<string> Flags, IReadOnlyList<int> KeywordIndexes)
{
    public static MaildirFileName Parse(string fileName)
    {
        var info = fileName.IndexOf(":2,", StringComparison.Ordinal);
        var basePart = info < 0 ? fileName : fileName[..info];
        long? size = null;
        foreach (var field in basePart.Split(',').Skip(1))
        {
            if (field.StartsWith("S=", StringComparison.Ordinal)
                && long.TryParse(field.AsSpan(2), NumberStyles.None, CultureInfo.InvariantCulture, out var s))
            {
                size = s;
            }
        }

        var flags = new List<string>();
        var keywords = new List<int>();
        if (info >= 0)
        {
            foreach (var c in fileName.AsSpan(info + 3))
            {
                switch (c)
                {
                    case 'D': flags.Add(@"\Draft"); break;
                    case 'F': flags.Add(@"\Flagged"); break;
                    case 'R': flags.Add(@"\Answered"); break;
                    case 'S': flags.Add(@"\Seen"); break;
                    case 'T': flags.Add(@"\Deleted"); break;
                    case >= 'a' and <= 'z': keywords.Add(c - 'a'); break;
                    default: break; // P (passed) and unknown letters have no IMAP flag
                }
            }
        }

        return new MaildirFileName(size, flags, keywords);
    }

    /// <summary>Dovecot's dovecot-keywords: one "INDEX NAME" per line ("0 $Label1" is letter a).</summary>
    public static IReadOnlyDictionary<int, string> ParseKeywords(IEnumerable<string> lines)
    {
        var names = new Dictionary<int, string>();
        foreach (var line in lines)
        {
            var space = line.IndexOf(' ', StringComparison.Ordinal);
            if (space > 0
                && int.TryParse(line.AsSpan(0, space), NumberStyles.None, CultureInfo.InvariantCulture, out var index)
                && index < 26
                && line.Length > space + 1)
            {
                names[index] = line[(space + 1)..].Trim();
            }
        }

        return names;
    }
}
