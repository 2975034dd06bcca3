using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Tidemark.Api;

namespace Tidemark.Replication;

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

    /// <summary>Throws for an unsuccessful answer, with the partner's own explanation; a 4xx answer is the partner's decision (<see cref="PartnerRefusedException"/>): retrying cannot help.</summary>
    public static async Task EnsureSuccessAsync(HttpResponseMessage response, string what, CancellationToken ct)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        var problem = await TryReadProblemAsync(response, ct);
        var message = $"{what}: {problem?.Detail ?? response.ReasonPhrase}";
        throw (int)response.StatusCode is >= 400 and < 500
            ? new PartnerRefusedException(message)
            : new StorageException(StorageError.Unavailable, message);
    }

    public static async Task<ProblemDto?> TryReadProblemAsync(HttpResponseMessage response, CancellationToken ct)
    {
        try
        {
            return await response.Content.ReadFromJsonAsync<ProblemDto>(ApiJson.Options, ct);
        }
        catch (JsonException)
        {
            return null; // not problem details: the status says enough
        }
    }
}
