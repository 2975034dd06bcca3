using System.Diagnostics;
using System.Text.Json;
using Tidemark.Api;

namespace Tidemark.Cli;

/// <summary>
/// Finds the server and its token: flag, then environment variable, then the data directory
/// (DATA/server.json of a running server, else the address in DATA/tidemark.json; DATA/token).
/// </summary>
public static class ServerLocator
{
    public const string DefaultServer = "http://127.0.0.1:8410/";

    public static string DataDirectory(string? flag) =>
        flag ?? NonEmpty(Environment.GetEnvironmentVariable("TIDEMARK_DATA")) ?? "tidemark-data";

    public static Uri Server(string? flag, string dataDirectory) => Locate(flag, dataDirectory).Server;

    /// <summary>
    /// The server's URL and, when it was found through the data directory's server.json, the SHA-256
    /// fingerprint of its TLS certificate to pin (null for plain HTTP or a URL given by flag or environment).
    /// </summary>
    public static (Uri Server, string? Pin) Locate(string? flag, string dataDirectory)
    {
        var explicitServer = flag ?? NonEmpty(Environment.GetEnvironmentVariable("TIDEMARK_SERVER"));
        string? pin = null;
        var text = explicitServer;
        if (text is null)
        {
            (text, pin) = FromDataDirectory(dataDirectory);
        }

        text ??= DefaultServer;
        if (!text.Contains("://", StringComparison.Ordinal))
        {
            text = "http://" + text;
        }

        if (!Uri.TryCreate(text.TrimEnd('/') + "/", UriKind.Absolute, out var uri))
        {
            throw new CliException($"'{text}' is not a server URL; write it like http://127.0.0.1:8410");
        }

        return (uri, pin);
    }

    /// <summary>
    /// How the CLI trusts an https server: the pinned certificate of a server found through its data
    /// directory, else the CA (or server certificate) in <paramref name="caCertificate"/>, else the system's trust store.
    /// </summary>
    public static HttpClientHandler Handler(string? pin, string? caCertificate)
    {
        var handler = new HttpClientHandler();
        if (pin is not null)
        {
            handler.ServerCertificateCustomValidationCallback = (_, certificate, _, _) =>
                certificate is not null && Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(certificate.RawData)) == pin;
            return handler;
        }

        var ca = caCertificate ?? NonEmpty(Environment.GetEnvironmentVariable("TIDEMARK_CA_CERT"));
        if (ca is null)
        {
            return handler;
        }

        System.Security.Cryptography.X509Certificates.X509Certificate2 root;
        try
        {
            root = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificateFromFile(ca);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
        {
            handler.Dispose();
            throw new CliException($"cannot read the CA certificate {ca} ({ex.Message}); give a PEM or DER certificate file");
        }

        handler.ServerCertificateCustomValidationCallback = (_, certificate, chain, errors) =>
        {
            if (certificate is null || chain is null || (errors & System.Net.Security.SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
            {
                return false;
            }

            if (certificate.RawData.AsSpan().SequenceEqual(root.RawData))
            {
                return true; // the server's own certificate, given as the trust anchor
            }

            chain.ChainPolicy.TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(root);
            chain.ChainPolicy.RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck;
            return chain.Build(certificate);
        };
        return handler;
    }

    public static string Token(string? flag, string dataDirectory)
    {
        var token = flag ?? NonEmpty(Environment.GetEnvironmentVariable("TIDEMARK_TOKEN"));
        if (token is not null)
        {
            return token;
        }

        var path = Path.Combine(dataDirectory, "token");
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"no API token: cannot read {Path.GetFullPath(path)} ({ex.Message}); pass --token, set TIDEMARK_TOKEN, or point --data at the server's data directory");
        }
    }

    private static (string? Server, string? Pin) FromDataDirectory(string dataDirectory)
    {
        try
        {
            var runtime = Path.Combine(dataDirectory, "server.json");
            if (File.Exists(runtime)
                && JsonSerializer.Deserialize<ServerEndpointsDto>(File.ReadAllText(runtime), ApiJson.Options) is { } endpoints
                && IsAlive(endpoints.Pid))
            {
                return (endpoints.Http, endpoints.TlsCertificateSha256);
            }

            var config = Path.Combine(dataDirectory, "tidemark.json");
            if (File.Exists(config))
            {
                using var document = JsonDocument.Parse(File.ReadAllText(config));
                if (document.RootElement.TryGetProperty("http", out var http) && http.GetString() is { Length: > 0 } address)
                {
                    return (address, null);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or JsonException or UnauthorizedAccessException)
        {
            // Unreadable state files: fall back to the default address; the connection error says where we looked.
        }

        return (null, null);
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}
