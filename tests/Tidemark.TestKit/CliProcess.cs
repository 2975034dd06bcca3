namespace Tidemark.TestKit;

/// <summary>The built `tidemark` CLI (see <see cref="TidemarkBuild"/>), run as a process with a deadline.</summary>
public static class CliProcess
{
    public static string DllPath => TidemarkBuild.DllPath;

    public static Task<ProcessResult> RunAsync(params string[] arguments) =>
        ProcessRunner.RunAsync(ProcessRunner.DefaultTimeout, "dotnet", [TidemarkBuild.RequireDll(), .. arguments]);

    public static Task<ProcessResult> RunAsync(IReadOnlyDictionary<string, string?> environment, params string[] arguments) =>
        ProcessRunner.RunWithEnvironmentAsync(ProcessRunner.DefaultTimeout, environment, "dotnet", [TidemarkBuild.RequireDll(), .. arguments]);
}
