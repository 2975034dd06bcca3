using System.Net.Sockets;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>What the test's Postfix and Dovecot share: waiting for a listener, reading SMTP/LMTP replies.</summary>
internal static class MailWire
{
    /// <summary>Whether something accepts a connection on 127.0.0.1:PORT now.</summary>
    public static async Task<bool> AcceptsAsync(int port)
    {
        try
        {
            using var tcp = new TcpClient();
            await tcp.ConnectAsync("127.0.0.1", port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// Reads one SMTP or LMTP reply (RFC 5321 4.2.1, which LMTP shares): its continuation lines
    /// ("250-...") are skipped, and the last line must carry <paramref name="code"/>.
    /// </summary>
    public static async Task ExpectReplyAsync(StreamReader reader, string code, string protocol)
    {
        string line;
        do
        {
            line = await reader.ReadLineAsync() ?? throw new IOException($"{protocol} closed, expected {code}");
        }
        while (line.Length > 3 && line[3] == '-');
        if (!line.StartsWith(code, StringComparison.Ordinal))
        {
            throw new IOException($"{protocol} answered '{line}', expected {code}");
        }
    }
}
