using System.Diagnostics;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.RegularExpressions;
using Tidemark.Api;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// A real `tidemark agent run` child process, paired with a server by `tidemark agent pair` (the
/// CLI, as an administrator would), listening on a free loopback port. Stopped by PID with SIGTERM
/// (which resumes anything still quiesced), killed if it does not stop.
/// </summary>
internal sealed partial class AgentProcess : IAsyncDisposable
{
    private static readonly TimeSpan _startTimeout = TimeSpan.FromSeconds(60);

    private readonly Process _process;
    private readonly StringBuilder _log = new();
    private readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private AgentProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Address { get; private set; } = "";

    public string Fingerprint { get; private set; } = "";

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

    /// <summary>Pairs an agent directory with <paramref name="serverFingerprint"/>, declares the mounts (and PostgreSQL clusters, NAME:CONNECTION; mail stores, root=...,postfix=...,dovecot=...; other pair options in <paramref name="pairOptions"/>), and runs the agent.</summary>
    public static async Task<AgentProcess> StartAsync(string agentDirectory, string serverFingerprint, double deadlineSeconds, IReadOnlyList<(string Path, string Volume)> mounts, IReadOnlyList<string>? postgres = null, IReadOnlyList<string>? mail = null, string listen = "127.0.0.1:0", IReadOnlyDictionary<string, string?>? environment = null, IReadOnlyList<string>? pairOptions = null)
    {
        List<string> pair = [TidemarkBuild.DllPath, "agent", "pair", "--agent-dir", agentDirectory, "--server-fingerprint", serverFingerprint, "--listen", listen, "--name", "app", "--deadline", $"{deadlineSeconds}"];
        foreach (var (path, volume) in mounts)
        {
            pair.AddRange(["--mount", $"{path}={volume}"]);
        }

        foreach (var cluster in postgres ?? [])
        {
            pair.AddRange(["--postgres", cluster]);
        }

        foreach (var store in mail ?? [])
        {
            pair.AddRange(["--mail", store]);
        }

        pair.AddRange(pairOptions ?? []);
        (await ProcessRunner.RunAsync("dotnet", [.. pair])).AssertSuccess();
        return await RunAsync(agentDirectory, environment);
    }

    /// <summary>Runs the agent of an agent directory paired before (a restart).</summary>
    public static async Task<AgentProcess> RunAsync(string agentDirectory, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var agent = new AgentProcess(ProcessRunner.Start("dotnet", [TidemarkBuild.DllPath, "agent", "run", "--agent-dir", agentDirectory], redirectOutput: true, environment: environment));
        try
        {
            var line = await agent._listening.Task.WaitAsync(_startTimeout);
            var match = ListeningLine().Match(line);
            agent.Address = match.Groups[1].Value;
            agent.Fingerprint = match.Groups[2].Value;
            return agent;
        }
        catch (TimeoutException)
        {
            await agent.DisposeAsync();
            throw new TimeoutException($"tidemark agent did not start within {_startTimeout}:\n{agent.Log}");
        }
    }

    /// <summary>
    /// An HTTPS client presenting the server's own identity (read from its data directory) and pinning
    /// this agent: what the server sends, for a test that plays a server that dies mid-snapshot.
    /// </summary>
    public HttpClient ClientAsServer(string serverDataDirectory)
    {
        var identity = Path.Combine(serverDataDirectory, "identity");
        using var pem = X509Certificate2.CreateFromPemFile(Path.Combine(identity, "cert.pem"), Path.Combine(identity, "key.pem"));
        var certificate = X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
        var fingerprint = Fingerprint;
        var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = [certificate],
                RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && Convert.ToHexStringLower(SHA256.HashData(c.GetRawCertData())) == fingerprint,
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri($"https://{Address}/agent/v1/"), Timeout = TimeSpan.FromSeconds(30) };
    }

    public static async Task<T> ReadAsync<T>(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"agent answered {(int)response.StatusCode}: {body}");
        return System.Text.Json.JsonSerializer.Deserialize<T>(body, ApiJson.Options)!;
    }

    public static Task<HttpResponseMessage> PostAsync(HttpClient http, string path, object? body) =>
        http.PostAsJsonAsync(path, body, ApiJson.Options);

    /// <summary>kill -9: nothing of the agent's own shutdown runs (no resume, no thaw).</summary>
    public async Task KillAsync()
    {
        Signals.Send(_process.Id, Signals.SigKill);
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>SIGSTOP: the agent runs nothing (no request, no job) until <see cref="Continue"/>; a test uses it to line up a call with work in progress.</summary>
    public void Pause() => Signals.Send(_process.Id, Signals.SigStop);

    /// <summary>SIGCONT after <see cref="Pause"/>.</summary>
    public void Continue() => Signals.Send(_process.Id, Signals.SigCont);

    /// <summary>
    /// SIGSTOP to the agent's child processes named <paramref name="name"/> (as /proc/PID/comm gives it,
    /// e.g. the nbdfuse serving a view): the agent itself goes on serving calls while whatever reads
    /// through them waits. Disposing the result sends SIGCONT to each. Empty when none runs.
    /// </summary>
    public PausedChildren PauseChildren(string name)
    {
        var paused = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), out var pid))
            {
                continue;
            }

            try
            {
                // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after its ')'.
                var stat = File.ReadAllText(Path.Combine(directory, "stat"));
                var close = stat.LastIndexOf(')');
                var open = stat.IndexOf('(', StringComparison.Ordinal);
                var fields = stat[(close + 2)..].Split(' ');
                if (stat[(open + 1)..close] == name && int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) == _process.Id)
                {
                    Signals.Send(pid, Signals.SigStop);
                    paused.Add(pid);
                }
            }
            catch (IOException)
            {
                // The process ended while the directory was listed.
            }
        }

        return new PausedChildren(paused);
    }

    /// <summary>The children <see cref="PauseChildren"/> stopped; disposing continues them.</summary>
    public sealed class PausedChildren(List<int> pids) : IDisposable
    {
        public int Count => pids.Count;

        public void Dispose()
        {
            foreach (var pid in pids)
            {
                Signals.TrySend(pid, Signals.SigCont);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Signals.TrySend(_process.Id, Signals.SigCont); // a paused agent could not end on SIGTERM
            try
            {
                Signals.Send(_process.Id, Signals.SigTerm);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (Exception e) when (e is TimeoutException or InvalidOperationException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }
        }

        _process.Dispose();
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

        if (ListeningLine().IsMatch(line))
        {
            _listening.TrySetResult(line);
        }
    }

    [GeneratedRegex(@"^agent listening on (\S+) fingerprint ([0-9a-f]{64})$")]
    private static partial Regex ListeningLine();
}
