using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Tidemark;

/// <summary>
/// The one construction of a self-signed certificate: the API's own TLS certificate, the server's
/// replication identity and the agent's identity all use it, so they cannot drift apart.
/// </summary>
public static class SelfSignedCertificate
{
    /// <summary>
    /// A pinned identity (the server's towards partners, an agent's towards its server): DIR/cert.pem
    /// and DIR/key.pem, made on first use (CN=PREFIX-random, client and server auth, 20 years). The
    /// certificate comes back with its key, round-tripped through PKCS#12 so TLS on Linux can use it.
    /// </summary>
    /// <param name="unreadable">The error for files that exist but cannot be read: it says what to do.</param>
    public static X509Certificate2 LoadOrCreateIdentity(string directory, string subjectPrefix, Func<CryptographicException, Exception> unreadable)
    {
        var certPath = Path.Combine(directory, "cert.pem");
        var keyPath = Path.Combine(directory, "key.pem");
        if (!File.Exists(certPath) || !File.Exists(keyPath))
        {
            Write(certPath, keyPath, $"CN={subjectPrefix}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}", years: 20, clientAuth: true, names: null);
        }

        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(certPath, keyPath);
            return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        }
        catch (CryptographicException ex)
        {
            throw unreadable(ex);
        }
    }

    /// <summary>SHA-256 of the certificate, lower-case hex: what the other side pins.</summary>
    public static string Fingerprint(X509Certificate certificate) => Convert.ToHexStringLower(SHA256.HashData(certificate.GetRawCertData()));

    /// <summary>Makes an ECDSA P-256 key and a self-signed certificate for it; writes both as PEM (the key 0600).</summary>
    public static void Write(string certPath, string keyPath, string subject, int years, bool clientAuth, SubjectAlternativeNameBuilder? names)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        if (names is not null)
        {
            request.CertificateExtensions.Add(names.Build());
        }

        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        OidCollection usages = [new Oid("1.3.6.1.5.5.7.3.1")];
        if (clientAuth)
        {
            usages.Add(new Oid("1.3.6.1.5.5.7.3.2"));
        }

        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(usages, false));
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(years));
        AtomicFile.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem() + "\n", UnixFileMode.UserRead | UnixFileMode.UserWrite);
        AtomicFile.WriteAllText(certPath, certificate.ExportCertificatePem() + "\n");
    }
}
