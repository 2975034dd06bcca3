namespace Tidemark.TestKit;

/// <summary>
/// Finds the built `tidemark` executable (CLI, server and agent in one): a test project that starts
/// it references Tidemark.Cli, which copies tidemark.dll and its runtimeconfig next to the tests.
/// </summary>
public static class TidemarkBuild
{
    public static string DllPath { get; } = Path.Combine(AppContext.BaseDirectory, "tidemark.dll");

    /// <summary>The dll's path, or a clear failure when the test project lacks the reference that copies it.</summary>
    public static string RequireDll() =>
        File.Exists(DllPath)
            ? DllPath
            : throw new InvalidOperationException($"{DllPath} is missing: add a ProjectReference to src/Tidemark.Cli to the test project so the build copies tidemark.dll next to the tests");
}
