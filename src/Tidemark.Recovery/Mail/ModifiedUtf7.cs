using System.Text;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// Mailbox names in modified UTF-7 (RFC 3501 5.1.3), which Dovecot uses for Maildir++ folder
/// directory names: "&" starts base64 of UTF-16BE with ',' for '/', "-" ends it, "&-" is "&".
/// </summary>
public static class ModifiedUtf7
{
    /// <summary>Decodes a name; one that is not valid modified UTF-7 is returned unchanged.</summary>
    public static string Decode(string name)
    {
        if (!name.Contains('&', StringComparison.Ordinal))
        {
            return name;
        }

        var result = new StringBuilder(name.Length);
        var i = 0;
        while (i < name.Length)
        {
            var c = name[i];
            if (c != '&')
            {
                result.Append(c);
                i++;
                continue;
            }

            var end = name.IndexOf('-', i + 1);
            if (end < 0)
            {
                return name;
            }

            if (end == i + 1)
            {
                result.Append('&');
            }
            else
            {
                var base64 = name[(i + 1)..end].Replace(',', '/');
                base64 = base64.PadRight(base64.Length + ((4 - (base64.Length % 4)) % 4), '=');
                byte[] bytes;
                try
                {
                    bytes = Convert.FromBase64String(base64);
                }
                catch (FormatException)
                {
                    return name;
                }

                result.Append(Encoding.BigEndianUnicode.GetString(bytes, 0, bytes.Length & ~1));
            }

            i = end + 1;
        }

        return result.ToString();
    }
}
