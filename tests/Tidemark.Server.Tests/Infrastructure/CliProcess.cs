namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>The built `tidemark` CLI (copied next to the tests through the project reference), run as a process.</summary>
internal static class CliProcess
{
    public static string DllPath { get; } = Path.Combine(AppContext.BaseDirectory, "tidemark.dll");

    public static Task<ProcessResult> RunAsync(params string[] arguments) =>
        ProcessRunner.RunAsync(ProcessRunner.DefaultTimeout, "dotnet", [DllPath, .. arguments]);

    public static Task<ProcessResult> RunAsync(IReadOnlyDictionary<string, string?> environment, params string[] arguments) =>
        ProcessRunner.RunWithEnvironmentAsync(ProcessRunner.DefaultTimeout, environment, "dotnet", [DllPath, .. arguments]);
}
