using System.Diagnostics;

namespace Tidemark.Interop.Tests.Infrastructure;

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
        RunAsync(DefaultTimeout, fileName, arguments);

    public static Task<ProcessResult> RunAsync(TimeSpan timeout, string fileName, params string[] arguments) =>
        RunInAsync(null, timeout, fileName, arguments);

    public static async Task<ProcessResult> RunInAsync(string? workingDirectory, TimeSpan timeout, string fileName, params string[] arguments)
    {
        using var process = Start(fileName, arguments, redirectOutput: true, workingDirectory);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        var command = Describe(fileName, arguments);
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

    /// <summary>Runs a program and fails the test unless it exits with 0.</summary>
    public static async Task<ProcessResult> CheckAsync(string fileName, params string[] arguments) =>
        (await RunAsync(DefaultTimeout, fileName, arguments)).AssertSuccess();

    /// <summary>Runs a program for cleanup: never throws, so the next cleanup step still runs.</summary>
    public static async Task<ProcessResult?> TryRunAsync(string fileName, params string[] arguments)
    {
        try
        {
            return await RunAsync(TimeSpan.FromSeconds(30), fileName, arguments);
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }

    public static Process Start(string fileName, IEnumerable<string> arguments, bool redirectOutput, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory ?? string.Empty,
            RedirectStandardOutput = redirectOutput,
            RedirectStandardError = redirectOutput,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // Neither the CLI nor a PostgreSQL tool may pick up a developer's own server, token or database.
        foreach (var name in new[] { "TIDEMARK_SERVER", "TIDEMARK_TOKEN", "TIDEMARK_DATA", "PGHOST", "PGPORT", "PGDATA", "PGUSER", "PGDATABASE" })
        {
            start.Environment.Remove(name);
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {Describe(fileName, arguments)}");
        process.StandardInput.Close();
        return process;
    }

    public static string Describe(string fileName, IEnumerable<string> arguments) => $"{fileName} {string.Join(' ', arguments)}";
}
