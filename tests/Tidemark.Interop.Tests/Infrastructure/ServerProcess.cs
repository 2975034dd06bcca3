using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Tidemark.Api;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// A real `tidemark serve` child process (the tidemark.dll built next to the tests through the
/// project reference) on free ports (port 0; the bound addresses are read from DATA/server.json)
/// over a data directory the test owns. Stopped by PID with SIGTERM, killed if it does not stop.
/// </summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    private static readonly TimeSpan _startTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan _stopTimeout = TimeSpan.FromSeconds(30);

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

    public static string DllPath { get; } = Path.Combine(AppContext.BaseDirectory, "tidemark.dll");

    public string DataDirectory { get; }

    public int Pid => _process.Id;

    public Uri Http { get; private set; } = null!;

    public string Token { get; private set; } = null!;

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

    /// <param name="storeCapacity">the pool's file store; sparse, so only what is written takes disk space</param>
    public static async Task<ServerProcess> StartAsync(string dataDirectory, string storeCapacity)
    {
        if (!File.Exists(DllPath))
        {
            throw new InvalidOperationException($"{DllPath} is missing: the project reference to Tidemark.Cli should have copied it next to the tests");
        }

        string[] arguments = [DllPath, "serve", "--data", dataDirectory, "--http", "127.0.0.1:0", "--nbd", "127.0.0.1:0", "--iscsi", "127.0.0.1:0", "--replication", "127.0.0.1:0", "--store-capacity", storeCapacity];
        var server = new ServerProcess(ProcessRunner.Start("dotnet", arguments, redirectOutput: true), dataDirectory);
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

    public TidemarkClient Client() => new(Http, Token, TimeSpan.FromSeconds(60));

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            try
            {
                Signals.Send(Pid, Signals.SigTerm);
                await _process.WaitForExitAsync().WaitAsync(_stopTimeout);
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(_stopTimeout);
            }
        }

        _process.Dispose();
    }

    private async Task WaitUntilServingAsync()
    {
        var runtime = Path.Combine(DataDirectory, "server.json");
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < _startTimeout)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"tidemark serve exited with {_process.ExitCode}:\n{Log}");
            }

            if (File.Exists(runtime))
            {
                try
                {
                    var endpoints = JsonSerializer.Deserialize<ServerEndpointsDto>(await File.ReadAllTextAsync(runtime), ApiJson.Options);
                    if (endpoints is not null && endpoints.Pid == Pid)
                    {
                        _ = endpoints.Nbd ?? throw new InvalidOperationException("the server runs without NBD");
                        Http = new Uri(endpoints.Http);
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

        throw new TimeoutException($"tidemark serve did not start within {_startTimeout}:\n{Log}");
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
