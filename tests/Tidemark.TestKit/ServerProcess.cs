using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Tidemark.Api;

namespace Tidemark.TestKit;

/// <summary>
/// A real `tidemark serve` child process (the tidemark.dll <see cref="TidemarkBuild"/> finds) on free
/// ports (port 0; the bound addresses are read from DATA/server.json) over a data directory the test
/// owns. Stopped by PID as an operator would: SIGTERM, a bounded wait, then kill. A crash (kill -9)
/// happens only when a test asks for it with <see cref="KillAsync"/>, so every other restart is a
/// clean one and a crash test says so in its own code.
/// </summary>
public sealed class ServerProcess : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(30);

    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private ServerProcess(Process process, string dataDirectory)
    {
        _process = process;
        DataDirectory = dataDirectory;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string DataDirectory { get; }

    public int Pid => _process.Id;

    public Uri Http { get; private set; } = null!;

    /// <summary>The NBD listener, "127.0.0.1:PORT".</summary>
    public string Nbd { get; private set; } = null!;

    /// <summary>The iSCSI portal, "127.0.0.1:PORT".</summary>
    public string Iscsi { get; private set; } = null!;

    public string Token { get; private set; } = null!;

    /// <summary>SHA-256 of the API's TLS certificate, from server.json (null without TLS).</summary>
    public string? TlsFingerprint { get; private set; }

    /// <summary>Everything the server wrote to stdout and stderr so far.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>
    /// Starts a server on loopback with free ports and a 1G sparse file store; any of those defaults
    /// given in <paramref name="extraArguments"/> (e.g. "--store-capacity", "4G") replaces it.
    /// </summary>
    public static Task<ServerProcess> StartAsync(string dataDirectory, params string[] extraArguments) =>
        StartAsync(dataDirectory, new Dictionary<string, string>(), extraArguments);

    /// <summary>Starts a server with <paramref name="environment"/> added to the test's own (a crash test's fault point).</summary>
    public static async Task<ServerProcess> StartAsync(string dataDirectory, IReadOnlyDictionary<string, string> environment, params string[] extraArguments)
    {
        // Defaults for what the caller does not set itself (each option may be given once).
        string[][] defaults = [["--http", "127.0.0.1:0"], ["--nbd", "127.0.0.1:0"], ["--iscsi", "127.0.0.1:0"], ["--replication", "127.0.0.1:0"], ["--store-capacity", "1G"]];
        string[] arguments =
        [
            TidemarkBuild.RequireDll(), "serve", "--data", dataDirectory,
            .. defaults.Where(d => !extraArguments.Contains(d[0])).SelectMany(d => d),
            .. extraArguments,
        ];
        var process = ProcessRunner.Start("dotnet", arguments, redirectOutput: true, environment: environment.ToDictionary(e => e.Key, e => (string?)e.Value));
        var server = new ServerProcess(process, dataDirectory);
        try
        {
            await server.WaitUntilServingAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    public Uri NbdUrl(string export) => new($"nbd://{Nbd}/{export}");

    public string IscsiUrl(string iqn, int lun = 0) => $"iscsi://{Iscsi}/{iqn}/{lun}";

    /// <summary>A client of the API; with TLS it trusts exactly the certificate server.json names.</summary>
    public TidemarkClient Client(string? token = null) =>
        new(new HttpClient(PinningHandler(TlsFingerprint)) { BaseAddress = Http, Timeout = TimeSpan.FromSeconds(60) }, token ?? Token, ownsHttp: true);

    /// <summary>kill -9: the crash case; what was acknowledged as durable must come back.</summary>
    public async Task KillAsync()
    {
        Signals.Send(Pid, Signals.SigKill);
        await _process.WaitForExitAsync().WaitAsync(StopTimeout);
    }

    /// <summary>Waits until the process ended by itself (a crash test's fault point killed it).</summary>
    public async Task WaitForExitAsync(TimeSpan timeout) => await _process.WaitForExitAsync().WaitAsync(timeout);

    /// <summary>
    /// SIGTERM, as systemd or Ctrl-C would; returns the exit code. A server that does not stop within
    /// the bound is killed and the test fails: a clean stop that hangs is a bug, not a crash test.
    /// </summary>
    public async Task<int> StopAsync()
    {
        if (!await TryStopAsync())
        {
            throw new TimeoutException($"tidemark serve did not stop within {StopTimeout} of SIGTERM and was killed:\n{Log}");
        }

        return _process.ExitCode;
    }

    /// <summary>Stops the server as <see cref="StopAsync"/> does, without failing: cleanup must always finish.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            await TryStopAsync();
        }

        _process.Dispose();
    }

    /// <summary>SIGTERM and a bounded wait; on timeout kills the whole tree. False when it had to kill.</summary>
    private async Task<bool> TryStopAsync()
    {
        // The process may have exited since the caller looked; then there is nothing to signal.
        Signals.TrySend(Pid, Signals.SigTerm);
        try
        {
            await _process.WaitForExitAsync().WaitAsync(StopTimeout);
            return true;
        }
        catch (TimeoutException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(StopTimeout);
            return false;
        }
    }

    private static HttpClientHandler PinningHandler(string? fingerprint)
    {
        var handler = new HttpClientHandler();
        if (fingerprint is not null)
        {
            handler.ServerCertificateCustomValidationCallback = (_, certificate, _, _) =>
                certificate is not null && Convert.ToHexStringLower(SHA256.HashData(certificate.RawData)) == fingerprint;
        }

        return handler;
    }

    private async Task WaitUntilServingAsync()
    {
        var runtime = Path.Combine(DataDirectory, "server.json");
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartTimeout)
        {
            if (_process.HasExited)
            {
                // Waiting for the exit again also waits until its output was read to the end: the
                // reason it gives is often the last line.
                await _process.WaitForExitAsync().WaitAsync(StopTimeout);
                throw new InvalidOperationException($"tidemark serve exited with {_process.ExitCode}:\n{Log}");
            }

            if (File.Exists(runtime))
            {
                try
                {
                    var endpoints = JsonSerializer.Deserialize<ServerEndpointsDto>(await File.ReadAllTextAsync(runtime), ApiJson.Options);
                    if (endpoints is not null && endpoints.Pid == Pid)
                    {
                        Http = new Uri(endpoints.Http);
                        TlsFingerprint = endpoints.TlsCertificateSha256;
                        Nbd = endpoints.Nbd ?? throw new InvalidOperationException("the server runs without NBD");
                        Iscsi = endpoints.Iscsi ?? throw new InvalidOperationException("the server runs without iSCSI");
                        Token = (await File.ReadAllTextAsync(Path.Combine(DataDirectory, "token"))).Trim();
                        return;
                    }
                }
                catch (JsonException)
                {
                    // Written atomically, so only a stale file of an earlier run can be read; retry.
                }
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"tidemark serve did not start within {StartTimeout}:\n{Log}");
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            _log.AppendLine(line);
        }
    }
}
