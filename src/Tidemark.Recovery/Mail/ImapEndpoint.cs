using System.Globalization;

namespace Tidemark.Recovery.Mail;

/// <summary>HOST:PORT of a mail server (IMAP, SMTP); [v6]:PORT for IPv6; <c>defaultPort</c> (IMAP's 143 unless given) when omitted.</summary>
public static class ImapEndpoint
{
    public const int DefaultPort = 143;

    /// <param name="option">the option the text came from, named in errors</param>
    public static (string Host, int Port) Parse(string text, string option = "--imap", int defaultPort = DefaultPort)
    {
        string host;
        string? port;
        if (text.StartsWith('['))
        {
            var close = text.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < text.Length && text[close + 1] != ':'))
            {
                throw Bad(text, option);
            }

            host = text[1..close];
            port = close + 1 < text.Length ? text[(close + 2)..] : null;
        }
        else
        {
            var colon = text.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0 && text.IndexOf(':', colon + 1) >= 0)
            {
                throw new RecoveryException(RecoveryFailure.BadInput, $"{option} '{text}': write an IPv6 address in brackets, [ADDRESS]:PORT");
            }

            host = colon < 0 ? text : text[..colon];
            port = colon < 0 ? null : text[(colon + 1)..];
        }

        var number = defaultPort;
        if (host.Length == 0 || (port is not null && (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out number) || number is < 1 or > 65535)))
        {
            throw Bad(text, option);
        }

        return (host, number);
    }

    private static RecoveryException Bad(string text, string option) =>
        new(RecoveryFailure.BadInput, $"{option} '{text}' is not HOST:PORT (a port is 1-65535)");
}
