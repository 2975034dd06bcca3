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

    public static Uri Server(string? flag, string dataDirectory)
    {
        var text = flag ?? NonEmpty(Environment.GetEnvironmentVariable("TIDEMARK_SERVER")) ?? FromDataDirectory(dataDirectory) ?? DefaultServer;
        if (!text.Contains("://", StringComparison.Ordinal))
        {
            text = "http://" + text;
        }

        if (!Uri.TryCreate(text.TrimEnd('/') + "/", UriKind.Absolute, out var uri))
        {
            throw new CliException($"'{text}' is not a server URL; write it like http://127.0.0.1:8410");
        }

        return uri;
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

    private static string? FromDataDirectory(string dataDirectory)
    {
        try
        {
            var runtime = Path.Combine(dataDirectory, "server.json");
            if (File.Exists(runtime)
                && JsonSerializer.Deserialize<ServerEndpointsDto>(File.ReadAllText(runtime), ApiJson.Options) is { } endpoints
                && IsAlive(endpoints.Pid))
            {
                return endpoints.Http;
            }

            var config = Path.Combine(dataDirectory, "tidemark.json");
            if (File.Exists(config))
            {
                using var document = JsonDocument.Parse(File.ReadAllText(config));
                if (document.RootElement.TryGetProperty("http", out var http) && http.GetString() is { Length: > 0 } address)
                {
                    return address;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or JsonException or UnauthorizedAccessException)
        {
            // Unreadable state files: fall back to the default address; the connection error says where we looked.
        }

        return null;
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
