using System.Diagnostics;

namespace Tidemark.TestKit;

/// <summary>What an external program did: its exit code and output.</summary>
public sealed record ProcessResult(string Command, int ExitCode, string StandardOutput, string StandardError)
{
    /// <summary>Fails (throws) unless the program exited with 0, showing its output.</summary>
    public ProcessResult AssertSuccess() =>
        ExitCode == 0
            ? this
            : throw new InvalidOperationException($"{Command} exited with {ExitCode}\nstdout: {StandardOutput}\nstderr: {StandardError}");
}

/// <summary>
/// Runs the real clients and tools tests drive (nbdinfo, iscsi-ls, qemu-img, mkfs, the tidemark CLI...)
/// with a deadline; on timeout the whole process tree is killed. Never inherits a developer's own
/// Tidemark server, token or PostgreSQL settings from the environment.
/// </summary>
public static class ProcessRunner
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    private static readonly string[] ScrubbedVariables =
        ["TIDEMARK_SERVER", "TIDEMARK_TOKEN", "TIDEMARK_DATA", "PGHOST", "PGPORT", "PGDATA", "PGUSER", "PGDATABASE"];

    public static Task<ProcessResult> RunAsync(string fileName, params string[] arguments) =>
        RunAsync(DefaultTimeout, fileName, arguments);

    public static Task<ProcessResult> RunAsync(TimeSpan timeout, string fileName, params string[] arguments) =>
        RunCoreAsync(null, null, timeout, fileName, arguments);

    public static Task<ProcessResult> RunInAsync(string? workingDirectory, TimeSpan timeout, string fileName, params string[] arguments) =>
        RunCoreAsync(workingDirectory, null, timeout, fileName, arguments);

    public static Task<ProcessResult> RunWithEnvironmentAsync(TimeSpan timeout, IReadOnlyDictionary<string, string?> environment, string fileName, params string[] arguments) =>
        RunCoreAsync(null, environment, timeout, fileName, arguments);

    /// <summary>Runs a program and fails unless it exits with 0.</summary>
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

    /// <summary>Starts a program (standard input closed) and leaves it running; the caller owns it.</summary>
    public static Process Start(string fileName, IEnumerable<string> arguments, bool redirectOutput, string? workingDirectory = null, IReadOnlyDictionary<string, string?>? environment = null)
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

        foreach (var name in ScrubbedVariables)
        {
            start.Environment.Remove(name);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
        {
            start.Environment[key] = value;
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {Describe(fileName, arguments)}");
        process.StandardInput.Close();
        return process;
    }

    public static string Describe(string fileName, IEnumerable<string> arguments) => $"{fileName} {string.Join(' ', arguments)}";

    private static async Task<ProcessResult> RunCoreAsync(string? workingDirectory, IReadOnlyDictionary<string, string?>? environment, TimeSpan timeout, string fileName, string[] arguments)
    {
        using var process = Start(fileName, arguments, redirectOutput: true, workingDirectory, environment);
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
}
