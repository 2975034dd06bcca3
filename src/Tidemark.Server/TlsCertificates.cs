using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Tidemark.Server;

/// <summary>
/// The API's TLS certificate: a PEM certificate and key given by the administrator, or one the server
/// makes for itself on first start ("self-signed", kept in DATA/tls, the key readable by the owner
/// only). Clients that find the server through its data directory pin the certificate by its SHA-256
/// fingerprint, published in DATA/server.json.
/// </summary>
public static class TlsCertificates
{
    public const string SelfSigned = "self-signed";

    public static X509Certificate2? Load(ServerSettings settings, DataDirectory data)
    {
        if (settings.TlsDisabled)
        {
            return null;
        }

        string certPath, keyPath;
        if (string.Equals(settings.TlsCertificate, SelfSigned, StringComparison.OrdinalIgnoreCase))
        {
            certPath = Path.Combine(data.Root, "tls", "cert.pem");
            keyPath = Path.Combine(data.Root, "tls", "key.pem");
            if (!File.Exists(certPath) || !File.Exists(keyPath))
            {
                CreateSelfSigned(certPath, keyPath);
            }
        }
        else
        {
            certPath = settings.TlsCertificate!;
            keyPath = settings.TlsKey ?? throw new ArgumentException($"tls-cert {certPath} needs its private key: pass --tls-key KEY.pem (PEM) too");
        }

        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(certPath, keyPath);
            // Kestrel on Linux needs the key in an exportable, ephemeral-free form: round-trip through PKCS#12.
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"cannot load the TLS certificate {certPath} with key {keyPath} ({ex.Message}); give a PEM certificate and its PEM private key, or --tls-cert self-signed", ex);
        }
    }

    public static string Fingerprint(X509Certificate2 certificate) => SelfSignedCertificate.Fingerprint(certificate);

    private static void CreateSelfSigned(string certPath, string keyPath)
    {
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddDnsName(Dns.GetHostName());
        names.AddIpAddress(IPAddress.Loopback);
        names.AddIpAddress(IPAddress.IPv6Loopback);
        SelfSignedCertificate.Write(certPath, keyPath, "CN=tidemark", years: 5, clientAuth: false, names);
    }
}
