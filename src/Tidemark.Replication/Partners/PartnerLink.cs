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

    /// <summary>An error answer's body read beyond this is not a problem document but a hostile or broken partner.</summary>
    public const int MaxProblemBytes = 64 * 1024;

    /// <summary>
    /// The partner's problem document (RFC 9457), or null when the answer carries none: a JSON media
    /// type (<c>application/problem+json</c>, <c>application/json</c>, any <c>+json</c>, with or
    /// without a charset) and a body of at most <see cref="MaxProblemBytes"/> that parses. The body is
    /// buffered, so it can be read again; a body that cannot be read (the link broke) is no problem
    /// document either: the status says enough.
    /// </summary>
    public static async Task<ProblemDto?> TryReadProblemAsync(HttpResponseMessage response, CancellationToken ct)
    {
        if (response.Content.Headers.ContentType?.MediaType is not { } mediaType
            || !(mediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) || mediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase)))
        {
            return null;
        }

        try
        {
            await response.Content.LoadIntoBufferAsync(MaxProblemBytes, ct);
            return JsonSerializer.Deserialize<ProblemDto>(await response.Content.ReadAsStringAsync(ct), ApiJson.Options);
        }
        catch (Exception ex) when (ex is JsonException or HttpRequestException or IOException or InvalidOperationException)
        {
            return null; // not a problem document (or not one that could be read): the status says enough
        }
    }
}
