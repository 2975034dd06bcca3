using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Tidemark.Agent;

/// <summary>
/// Pre/post hooks for applications the agent has no plugin for (as the old appliance's agents did
/// for Exchange and SQL Server): `/bin/sh -c PRE` when a volume the entry names is cut, `POST` at
/// resume (also at the deadline). Each runs with a timeout (killed with its process tree when
/// exceeded); a PRE that fails or times out fails the quiesce, and its POST is not run. Their
/// output (bounded) goes back to the server, which records it in its event log.
/// </summary>
public sealed class ScriptPlugin(AgentConfig config, ILogger logger, QuiesceJournal? journal = null) : IQuiescePlugin
{
    /// <summary>What a hook may print that is kept: enough for an error message, not a log file.</summary>
    public const int MaxOutputChars = 2048;

    public string Name => "scripts";

    private QuiesceJournal? Journal => journal;

    public async Task<IQuiesced?> QuiesceAsync(IReadOnlySet<string> volumes, CancellationToken ct)
    {
        var ran = new List<(AgentScriptEntry Entry, List<string> Output, string? Journal)>();
        try
        {
            foreach (var entry in config.Scripts.Where(s => s.Volumes.Any(volumes.Contains)))
            {
                var output = new List<string>();

                // A PRE that ran owes its POST even if the agent is killed before the resume: the next start runs it.
                var written = entry.Post is null ? null : journal?.Write(entry.Name, QuiesceJournalEntry.Create(QuiesceJournalEntry.ScriptKind) with { Script = entry.Name, Volumes = [.. volumes.Order(StringComparer.Ordinal)] });
                if (entry.Pre is { } pre)
                {
                    var (ok, line) = await RunAsync(entry, "pre", pre, volumes);
                    output.Add(line);
                    if (!ok)
                    {
                        if (written is not null)
                        {
                            journal!.Remove(written);
                        }

                        throw new StorageException(StorageError.IoError, line);
                    }
                }

                ran.Add((entry, output, written));
            }
        }
        catch
        {
            await new Hooks(this, ran, volumes).ResumeAsync();
            throw;
        }

        return ran.Count == 0 ? null : new Hooks(this, ran, volumes);
    }

    /// <summary>The POST a previous run of the agent owed (it was killed between PRE and POST), with TIDEMARK_RECOVERY=1.</summary>
    internal async Task<(bool Ok, string Line)> RunOwedPostAsync(AgentScriptEntry entry, IReadOnlyList<string> volumes) =>
        await RunAsync(entry, "post", entry.Post!, volumes.ToHashSet(StringComparer.Ordinal), recovery: true);

    private async Task<(bool Ok, string Line)> RunAsync(AgentScriptEntry entry, string phase, string command, IReadOnlySet<string> volumes, bool recovery = false)
    {
        var start = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        start.Environment["TIDEMARK_PHASE"] = phase;
        start.Environment["TIDEMARK_VOLUMES"] = string.Join(' ', volumes.Order(StringComparer.Ordinal));
        if (recovery)
        {
            start.Environment["TIDEMARK_RECOVERY"] = "1";
        }
        var output = new StringBuilder();
        void Append(string? line)
        {
            lock (output)
            {
                if (line is not null && output.Length < MaxOutputChars)
                {
                    output.Append(line.AsSpan(0, Math.Min(line.Length, MaxOutputChars - output.Length))).Append('\n');
                }
            }
        }

        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        var timer = Stopwatch.StartNew();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var timeout = TimeSpan.FromSeconds(entry.TimeoutSeconds);
        bool ok;
        string verdict;
        try
        {
            await process.WaitForExitAsync().WaitAsync(timeout);
            ok = process.ExitCode == 0;
            verdict = $"exit {process.ExitCode}";
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            ok = false;
            verdict = $"timed out after {entry.TimeoutSeconds:0.###}s and was killed";
        }

        string text;
        lock (output)
        {
            text = output.ToString().TrimEnd();
        }

        var line = $"script {entry.Name} {phase} ({verdict}, {timer.Elapsed.TotalSeconds:0.###}s): {(text.Length == 0 ? "(no output)" : text)}";
        if (!ok)
        {
            AgentLog.ScriptOutput(logger, line);
        }

        return (ok, line);
    }

    private sealed class Hooks(ScriptPlugin plugin, List<(AgentScriptEntry Entry, List<string> Output, string? Journal)> ran, IReadOnlySet<string> volumes) : IQuiesced
    {
        private readonly List<string> _output = [.. ran.SelectMany(r => r.Output)];
        private int _resumed;

        public string Consistency => "application";

        public IReadOnlyList<string> Items { get; } = [.. ran.Select(r => $"script {r.Entry.Name}")];

        public IReadOnlyList<string> Output
        {
            get
            {
                lock (_output)
                {
                    return [.. _output];
                }
            }
        }

        public async Task ResumeAsync()
        {
            if (Interlocked.Exchange(ref _resumed, 1) != 0)
            {
                return;
            }

            var failures = new List<string>();
            for (var i = ran.Count - 1; i >= 0; i--)
            {
                if (ran[i].Entry.Post is not { } post)
                {
                    continue;
                }

                var (ok, line) = await plugin.RunAsync(ran[i].Entry, "post", post, volumes);
                if (ran[i].Journal is { } written)
                {
                    // Ran, whatever its exit: a POST is not repeated at the next start.
                    plugin.Journal?.Remove(written);
                }

                lock (_output)
                {
                    _output.Add(line);
                }

                if (!ok)
                {
                    failures.Add(line);
                }
            }

            if (failures.Count > 0)
            {
                throw new StorageException(StorageError.IoError, string.Join("; ", failures));
            }
        }
    }
}
