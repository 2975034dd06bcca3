using System.Diagnostics;

namespace Tidemark.Recovery;

/// <summary>What a host tool did: its exit code and output.</summary>
public sealed record HostCommandResult(string Command, int ExitCode, string StandardOutput, string StandardError)
{
    public string Describe() => $"{Command} exited with {ExitCode}: {StandardError.Trim()}{(StandardOutput.Trim().Length > 0 ? " " + StandardOutput.Trim() : "")}";
}

/// <summary>
/// Runs the host tools a mounted snapshot needs (losetup, mount, umount, fusermount3) with a deadline,
/// arguments passed as a list (never through a shell), the process killed on timeout.
/// </summary>
public static class HostCommand
{
    private static readonly string[] _systemDirectories = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

    public static string? Find(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty)
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(_systemDirectories)
            .Select(d => Path.Combine(d, tool))
            .FirstOrDefault(File.Exists);

    public static string Require(string tool, string package) =>
        Find(tool) ?? throw new RecoveryException(RecoveryFailure.BadInput, $"{tool} is not installed on this recovery host (Debian package {package})");

    public static async Task<HostCommandResult> RunAsync(string tool, IReadOnlyList<string> arguments, TimeSpan timeout, CancellationToken ct = default)
    {
        var start = new ProcessStartInfo(Find(tool) ?? tool)
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

        var command = string.Join(' ', [tool, .. arguments]);
        using var process = Process.Start(start) ?? throw new RecoveryException(RecoveryFailure.BadInput, $"could not start {tool}");
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        var stderr = process.StandardError.ReadToEndAsync(CancellationToken.None);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None);
            ct.ThrowIfCancellationRequested();
            throw new RecoveryException(RecoveryFailure.BadInput, $"{command} did not finish within {timeout.TotalSeconds:F0} s");
        }

        return new HostCommandResult(command, process.ExitCode, await stdout, await stderr);
    }
}
