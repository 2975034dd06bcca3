using System.Security.Cryptography.X509Certificates;

namespace Tidemark.Agent;

/// <summary>
/// The agent's identity: an ECDSA P-256 key and self-signed certificate made on first use in
/// AGENTDIR/identity (key readable by the owner only), pinned by the server by its SHA-256
/// fingerprint, as partners pin each other (ADR 0005). The same construction as the server's
/// identity (SelfSignedCertificate in Common; the agent sees only Common and the API contracts, ADR 0015).
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

    public static string FingerprintOf(X509Certificate certificate) => SelfSignedCertificate.Fingerprint(certificate);

    public static AgentIdentity LoadOrCreate(string agentDirectory)
    {
        var directory = Path.Combine(agentDirectory, "identity");
        return new(SelfSignedCertificate.LoadOrCreateIdentity(
            directory,
            "tidemark-agent",
            ex => new InvalidDataException($"the agent identity in {directory} cannot be read ({ex.Message}); restore it, or delete the folder to make a new one and add the host on the server again", ex)));
    }

    public void Dispose() => Certificate.Dispose();
}
