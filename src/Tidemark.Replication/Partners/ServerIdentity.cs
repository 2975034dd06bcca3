using System.Security.Cryptography.X509Certificates;

namespace Tidemark.Replication;

/// <summary>
/// This server's identity towards its replication partners: an ECDSA key and self-signed certificate
/// made on first start in DATA/identity (the key readable by the owner only). Partners know each other
/// by the SHA-256 fingerprint of that certificate, exchanged once when pairing, and refuse everyone
/// else: the link is TLS 1.3 with both sides' certificates pinned, so nothing crosses it in clear and
/// an unknown peer cannot connect.
/// </summary>
public sealed class ServerIdentity : IDisposable
{
    private ServerIdentity(X509Certificate2 certificate)
    {
        Certificate = certificate;
        Fingerprint = FingerprintOf(certificate);
    }

    public X509Certificate2 Certificate { get; }

    /// <summary>SHA-256 of the certificate, lower-case hex: what a partner pins.</summary>
    public string Fingerprint { get; }

    public static string FingerprintOf(X509Certificate2 certificate) => SelfSignedCertificate.Fingerprint(certificate);

    public static ServerIdentity LoadOrCreate(string directory) =>
        new(SelfSignedCertificate.LoadOrCreateIdentity(
            directory,
            "tidemark",
            ex => new InvalidDataException($"the server identity in {directory} cannot be read ({ex.Message}); restore it from a backup (partners pin it), or delete the folder to make a new one and pair again", ex)));

    public void Dispose() => Certificate.Dispose();
}
