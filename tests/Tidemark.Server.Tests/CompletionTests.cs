using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The bash completion script, loaded into a real bash, completes commands and subcommands.</summary>
public sealed class CompletionTests
{
    [Theory]
    [InlineData("tidemark vol", "volume")]
    [InlineData("tidemark volume auto", "autogrow")]
    [InlineData("tidemark event list --fo", "--follow")]
    public async Task BashCompletion_CompletesFromTheCli(string line, string expected)
    {
        var words = string.Join(' ', line.Split(' ').Select(w => $"'{w}'"));
        var script = $$"""
            tidemark() { dotnet '{{CliProcess.DllPath}}' "$@"; }
            source <(tidemark completion bash)
            COMP_LINE='{{line}}'; COMP_POINT=${#COMP_LINE}; COMP_WORDS=({{words}}); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            _tidemark_complete
            printf '%s\n' "${COMPREPLY[@]}"
            """;

        var result = (await ProcessRunner.RunAsync("bash", "-c", script)).AssertSuccess();

        Assert.Equal([expected], result.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task Completion_UnknownShell_IsRefused()
    {
        var result = await CliProcess.RunAsync("completion", "fish");

        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("bash", result.StandardError, StringComparison.Ordinal);
    }
}
