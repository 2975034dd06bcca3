using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Tidemark.Agent;

/// <summary>
/// The agent's identity: an ECDSA P-256 key and self-signed certificate made on first use in
/// AGENTDIR/identity (key readable by the owner only), pinned by the server by its SHA-256
/// fingerprint, as partners pin each other (ADR 0005). The same construction as the server's
/// identity; the agent cannot use the server's code (it sees only the API contracts, ADR 0015).
/// </summary>
public sealed class AgentIdentity : IDisposable
{
    private AgentIdentity(X509Certificate2 certificate)
    {
        Certificate = certificate;
        Fingerprint = FingerprintOf(certificate);
    }

    public X509Certificate2 Certificate { get; }

    public string Fingerprint { get; }

    public static string FingerprintOf(X509Certificate certificate) => Convert.ToHexStringLower(SHA256.HashData(certificate.GetRawCertData()));

    public static AgentIdentity LoadOrCreate(string agentDirectory)
    {
        var directory = Path.Combine(agentDirectory, "identity");
        var certPath = Path.Combine(directory, "cert.pem");
        var keyPath = Path.Combine(directory, "key.pem");
        if (!File.Exists(certPath) || !File.Exists(keyPath))
        {
            Create(directory, certPath, keyPath);
        }

        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(certPath, keyPath);
            return new AgentIdentity(X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null));
        }
        catch (CryptographicException ex)
        {
            throw new InvalidDataException($"the agent identity in {directory} cannot be read ({ex.Message}); restore it, or delete the folder to make a new one and add the host on the server again", ex);
        }
    }

    private static void Create(string directory, string certPath, string keyPath)
    {
        Directory.CreateDirectory(directory);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN=tidemark-agent-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(20));
        var keyOptions = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            keyOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var writer = new StreamWriter(keyPath, keyOptions))
        {
            writer.Write(key.ExportPkcs8PrivateKeyPem() + "\n");
        }

        File.WriteAllText(certPath, certificate.ExportCertificatePem() + "\n");
    }

    public void Dispose() => Certificate.Dispose();
}
