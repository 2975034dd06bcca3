using System.IO.Pipelines;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Tidemark.Server;

/// <summary>
/// Upgrades a connection's pipes to TLS in place (NBD's STARTTLS): an SslStream over the raw pipes,
/// then pipes over the SslStream. Bytes the client sent after the STARTTLS acknowledgement are still
/// in the raw reader and become the TLS handshake.
/// </summary>
public static class PipeTls
{
    public static async ValueTask<IDuplexPipe> UpgradeAsync(IDuplexPipe transport, X509Certificate2 certificate, CancellationToken cancellationToken)
    {
        var raw = new DuplexStream(transport.Input.AsStream(leaveOpen: true), transport.Output.AsStream(leaveOpen: true));
        var ssl = new SslStream(raw, leaveInnerStreamOpen: false);
        try
        {
            await ssl.AuthenticateAsServerAsync(
                new SslServerAuthenticationOptions
                {
                    ServerCertificate = certificate,
                    EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                    ClientCertificateRequired = false,
                },
                cancellationToken);
        }
        catch
        {
            await ssl.DisposeAsync();
            throw;
        }

        return new Pipe(PipeReader.Create(ssl), PipeWriter.Create(ssl));
    }

    private sealed record Pipe(PipeReader Input, PipeWriter Output) : IDuplexPipe;

    /// <summary>One stream that reads from one side and writes to the other.</summary>
    private sealed class DuplexStream(Stream input, Stream output) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => input.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => input.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => input.ReadAsync(buffer, offset, count, cancellationToken);

        public override void Write(byte[] buffer, int offset, int count) => output.Write(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => output.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => output.WriteAsync(buffer, offset, count, cancellationToken);

        public override void Flush() => output.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => output.FlushAsync(cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                input.Dispose();
                output.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
