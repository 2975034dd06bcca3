using System.Diagnostics;

namespace Tidemark.Server.Tests.Infrastructure;

internal sealed record ProcessResult(string Command, int ExitCode, string StandardOutput, string StandardError)
{
    public ProcessResult AssertSuccess()
    {
        Assert.True(ExitCode == 0, $"{Command} exited with {ExitCode}\nstdout: {StandardOutput}\nstderr: {StandardError}");
        return this;
    }
}

/// <summary>Runs an external program with a deadline; on timeout the whole process tree is killed.</summary>
internal static class ProcessRunner
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    public static Task<ProcessResult> RunAsync(string fileName, params string[] arguments) =>
        RunAsync(DefaultTimeout, null, fileName, arguments);

    public static async Task<ProcessResult> RunAsync(TimeSpan timeout, IReadOnlyDictionary<string, string?>? environment, string fileName, params string[] arguments)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // The CLI must not pick up a developer's own server or token.
        start.Environment.Remove("TIDEMARK_SERVER");
        start.Environment.Remove("TIDEMARK_TOKEN");
        start.Environment.Remove("TIDEMARK_DATA");
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
        {
            start.Environment[key] = value;
        }

        var command = $"{fileName} {string.Join(' ', arguments)}";
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {command}");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            throw new TimeoutException($"{command} did not finish within {timeout}; stderr: {await stderr}");
        }

        return new ProcessResult(command, process.ExitCode, await stdout, await stderr);
    }
}
