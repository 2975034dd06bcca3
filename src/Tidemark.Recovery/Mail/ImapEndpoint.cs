using System.Globalization;

namespace Tidemark.Recovery.Mail;

/// <summary>HOST:PORT of an IMAP server; [v6]:PORT for IPv6; port 143 when omitted.</summary>
public static class ImapEndpoint
{
    public const int DefaultPort = 143;

    public static (string Host, int Port) Parse(string text)
    {
        string host;
        string? port;
        if (text.StartsWith('['))
        {
            var close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < text.Length && text[close + 1] != ':'))
            {
                throw Bad(text);
            }

            host = text[1..close];
            port = close + 1 < text.Length ? text[(close + 2)..] : null;
        }
        else
        {
            var colon = text.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0 && text.IndexOf(':', colon + 1) >= 0)
            {
                throw new RecoveryException(RecoveryFailure.BadInput, $"--imap '{text}': write an IPv6 address in brackets, [ADDRESS]:PORT");
            }

            host = colon < 0 ? text : text[..colon];
            port = colon < 0 ? null : text[(colon + 1)..];
        }

        var number = DefaultPort;
        if (host.Length == 0 || (port is not null && (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out number) || number is < 1 or > 65535)))
        {
            throw Bad(text);
        }

        return (host, number);
    }

    private static RecoveryException Bad(string text) =>
        new(RecoveryFailure.BadInput, $"--imap '{text}' is not HOST:PORT (a port is 1-65535)");
}
