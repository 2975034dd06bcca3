using System.Text.RegularExpressions;

namespace Tidemark.Server.Tests;

/// <summary>The scripts a newcomer runs first: ./tidemark and scripts/install-deps.</summary>
public sealed partial class FrontDoorScriptTests
{
    private static readonly string Root = FindRoot();

    [Fact]
    public async Task Wrapper_WatchList_HoldsEveryProjectTheCliReferences()
    {
        var expected = new SortedSet<string>(StringComparer.Ordinal);
        Collect(Path.Combine(Root, "src", "Tidemark.Cli", "Tidemark.Cli.csproj"), expected);

        var result = (await ProcessRunner.RunWithEnvironmentAsync(
            TimeSpan.FromSeconds(30),
            new Dictionary<string, string?> { ["TIDEMARK_WRAPPER_SOURCES"] = "1" },
            Path.Combine(Root, "tidemark"))).AssertSuccess();
        var watched = new SortedSet<string>(result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries), StringComparer.Ordinal);

        Assert.Contains(Path.Combine(Root, "src", "Tidemark.Replication"), watched);
        Assert.Equal(expected, watched);
    }

    [Fact]
    public void InstallDeps_EveryAptCall_WaitsForTheDpkgLock()
    {
        var script = File.ReadAllText(Path.Combine(Root, "scripts", "install-deps"));

        var calls = AptCall().Matches(script);

        Assert.NotEmpty(calls);
        Assert.All(calls, c => Assert.Contains("\"${lock[@]}\"", c.Value, StringComparison.Ordinal));
        Assert.Contains("DPkg::Lock::Timeout=", script, StringComparison.Ordinal);
    }

    private static void Collect(string csproj, ISet<string> into)
    {
        var full = Path.GetFullPath(csproj);
        if (!into.Add(Path.GetDirectoryName(full)!))
        {
            return;
        }

        foreach (Match reference in ProjectReference().Matches(File.ReadAllText(full)))
        {
            Collect(Path.Combine(Path.GetDirectoryName(full)!, reference.Groups[1].Value.Replace('\\', '/')), into);
        }
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Tidemark.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("the repository root (Tidemark.slnx) is not above the test binaries");
    }

    [GeneratedRegex("<ProjectReference Include=\"([^\"]+)\"")]
    private static partial Regex ProjectReference();

    [GeneratedRegex(@"apt-get [^\n]*(install|update)")]
    private static partial Regex AptCall();
}
