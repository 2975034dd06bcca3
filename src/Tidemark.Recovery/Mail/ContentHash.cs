using System.Security.Cryptography;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// A message's identity for "already there?": SHA-256 of its bytes with CRLF read as LF and trailing
/// line ends dropped, because a Maildir file holds LF, IMAP carries CRLF, and a server may store
/// either (Dovecot's mail_save_crlf).
/// </summary>
public static class ContentHash
{
    public static async Task<string> ComputeAsync(Stream content, CancellationToken ct)
    {
        using var writer = new Writer();
        var buffer = new byte[81920];
        var pendingCr = false;
        var pendingNewlines = 0;
        int read;
        while ((read = await content.ReadAsync(buffer, ct)) > 0)
        {
            for (var i = 0; i < read; i++)
            {
                var b = buffer[i];
                if (pendingCr)
                {
                    pendingCr = false;
                    if (b != (byte)'\n')
                    {
                        writer.Newlines(ref pendingNewlines);
                        writer.Put((byte)'\r');
                    }
                }

                if (b == (byte)'\r')
                {
                    pendingCr = true;
                }
                else if (b == (byte)'\n')
                {
                    // Held back until something follows, so trailing line ends do not count.
                    pendingNewlines++;
                }
                else
                {
                    writer.Newlines(ref pendingNewlines);
                    writer.Put(b);
                }
            }
        }

        if (pendingCr)
        {
            writer.Newlines(ref pendingNewlines);
            writer.Put((byte)'\r');
        }

        return writer.Finish();
    }

    private sealed class Writer : IDisposable
    {
        private readonly IncrementalHash _sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private readonly byte[] _buffer = new byte[16384];
        private int _count;

        public void Put(byte b)
        {
            if (_count == _buffer.Length)
            {
                _sha.AppendData(_buffer, 0, _count);
                _count = 0;
            }

            _buffer[_count++] = b;
        }

        public void Newlines(ref int pending)
        {
            for (; pending > 0; pending--)
            {
                Put((byte)'\n');
            }
        }

        public string Finish()
        {
            _sha.AppendData(_buffer, 0, _count);
            _count = 0;
            return Convert.ToHexStringLower(_sha.GetHashAndReset());
        }

        public void Dispose() => _sha.Dispose();
    }
}
