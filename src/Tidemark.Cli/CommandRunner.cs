using System.CommandLine;
using System.Net.Sockets;
using Tidemark.Api;

namespace Tidemark.Cli;

/// <summary>
/// Runs one client command: finds the server and token, calls the API, and turns every failure into
/// one line on stderr and a non-zero exit code (1: the server refused, 2: bad input or local setup,
/// 3: the server cannot be reached).
/// </summary>
public static class CommandRunner
{
    public const int Refused = 1;
    public const int BadInput = 2;
    public const int Unreachable = 3;

    public static void SetClientAction(this Command command, Func<ParseResult, TidemarkClient, bool, CancellationToken, Task> action) =>
        command.SetAction(async (parse, ct) => await RunAsync(parse, action, ct));

    public static async Task<int> RunAsync(ParseResult parse, Func<ParseResult, TidemarkClient, bool, CancellationToken, Task> action, CancellationToken ct)
    {
        Uri? server = null;
        try
        {
            var data = ServerLocator.DataDirectory(parse.GetValue(GlobalOptions.Data));
            (server, var pin) = ServerLocator.Locate(parse.GetValue(GlobalOptions.Server), data);
            var token = ServerLocator.Token(parse.GetValue(GlobalOptions.Token), data);
            var http = new HttpClient(ServerLocator.Handler(pin, parse.GetValue(GlobalOptions.CaCertificate)), disposeHandler: true)
            {
                BaseAddress = server,
                Timeout = TimeSpan.FromMinutes(10),
            };
            using var client = new TidemarkClient(http, token, ownsHttp: true);
            await action(parse, client, parse.GetValue(GlobalOptions.Json), ct);
            return 0;
        }
        catch (TidemarkApiException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message} [{ex.Code}]");
            return Refused;
        }
        catch (CliException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return ex.ExitCode;
        }
        catch (StorageException ex)
        {
            // Local checks that reuse the engine's wording, for example a size that does not parse.
            await Console.Error.WriteLineAsync($"error: {ex.Message}");
            return BadInput;
        }
        catch (HttpRequestException ex) when (ex.InnerException is System.Security.Authentication.AuthenticationException)
        {
            await Console.Error.WriteLineAsync($"error: the TLS certificate of {server} is not trusted ({ex.InnerException.Message}); pass --ca-cert FILE (the CA that signed it, or the server's certificate, e.g. DATA/tls/cert.pem) or point --data at the server's data directory");
            return Unreachable;
        }
        catch (HttpRequestException ex) when (ex.InnerException is SocketException || ex.HttpRequestError == HttpRequestError.ConnectionError)
        {
            await Console.Error.WriteLineAsync($"error: cannot reach the Tidemark server at {server} ({ex.Message}); start it with 'tidemark serve' or pass --server / --data");
            return Unreachable;
        }
        catch (HttpRequestException ex)
        {
            await Console.Error.WriteLineAsync($"error: talking to {server} failed ({ex.Message})");
            return Unreachable;
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync($"error: the server at {server} did not answer in time; check that it is running and not stuck");
            return Unreachable;
        }
    }

    public static long ParseSize(string text, string what) =>
        ByteSize.TryParse(text, out var bytes)
            ? bytes
            : throw new CliException($"{what} '{text}' is not a size; write it like 10G, 512M, 4K or a number of bytes");

    /// <summary>A volume size: a size of at least one byte (the server checks the block multiple and the maximum).</summary>
    public static long ParseVolumeSize(string text, string what)
    {
        var bytes = ParseSize(text, what);
        return bytes > 0 ? bytes : throw new CliException($"{what} must be larger than 0; write it like 10G, 512M or 4K");
    }

    /// <summary>Checks VOLUME@SNAPSHOT before any request, so the message names the argument.</summary>
    public static (string Volume, string Snapshot) SplitAddress(string address)
    {
        var at = address.IndexOf('@', StringComparison.Ordinal);
        if (at <= 0 || at == address.Length - 1)
        {
            throw new CliException($"'{address}' is not a snapshot address; write it as VOLUME@SNAPSHOT");
        }

        return (address[..at], address[(at + 1)..]);
    }
}
