using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Tidemark.Api;

namespace Tidemark.Server.Replication;

/// <summary>
/// Outgoing connections to a partner: HTTPS over TLS 1.3, presenting this server's identity
/// certificate and accepting only the partner's pinned one.
/// </summary>
public static class PartnerLink
{
    public const string PathPrefix = "/replication/v1";

    public static HttpClient Create(ServerIdentity identity, PartnerDto partner, TimeSpan timeout)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(10),
            SslOptions = new SslClientAuthenticationOptions
            {
                TargetHost = "tidemark",
                EnabledSslProtocols = SslProtocols.Tls13,
                ClientCertificates = new X509CertificateCollection { identity.Certificate },
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                    certificate is not null && ServerIdentity.FingerprintOf(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData())) == partner.Fingerprint,
            },
        };
        return new HttpClient(handler, disposeHandler: true) { BaseAddress = new Uri($"https://{partner.Address}/"), Timeout = timeout };
    }
}
