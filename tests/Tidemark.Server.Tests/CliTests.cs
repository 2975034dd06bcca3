using System.Text.Json;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The built `tidemark` CLI as a process against a real server, found through --data.</summary>
public sealed class CliTests : ServerTest
{
    [Fact]
    public async Task Cli_VolumeSnapshotViewDiffRollback_EndToEndSucceeds()
    {
        (await RunAsync("volume", "create", "db", "--size", "16M")).AssertSuccess();
        var table = (await RunAsync("volume", "list")).AssertSuccess().StandardOutput;
        (await RunAsync("snapshot", "create", "db", "--name", "s1")).AssertSuccess();
        var export = Json<ExportDto>(await RunAsync("export", "nbd", "db", "--json"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x33 4k 4k", export.Url!)).AssertSuccess();
        var diff = Json<DiffPageDto>(await RunAsync("snapshot", "diff", "db@s1", "--json"));
        var diffTable = (await RunAsync("snapshot", "diff", "db@s1")).AssertSuccess().StandardOutput;
        (await RunAsync("view", "create", "db@s1", "--name", "db-copy")).AssertSuccess();
        var rollback = Json<RollbackResult>(await RunAsync("volume", "rollback", "db", "s1", "--json"));
        var afterRollback = Json<DiffPageDto>(await RunAsync("snapshot", "diff", "db@s1", "--json"));
        var volumes = Json<List<VolumeDto>>(await RunAsync("volume", "list", "--json"));
        var snapshots = Json<List<SnapshotDto>>(await RunAsync("snapshot", "list", "db", "--json"));
        (await RunAsync("snapshot", "show", "db@s1")).AssertSuccess();
        (await RunAsync("group", "create", "g", "db", "db-copy")).AssertSuccess();
        var groupSnapshots = Json<List<SnapshotDto>>(await RunAsync("group", "snapshot", "g", "--name", "nightly", "--json"));
        (await RunAsync("export", "remove", "db")).AssertSuccess();
        (await RunAsync("view", "promote", "db-copy")).AssertSuccess();
        var verify = await RunAsync("verify");
        var pool = (await RunAsync("pool", "info")).AssertSuccess().StandardOutput;

        Assert.Matches(@"NAME\s+KIND\s+SIZE", table);
        Assert.Matches(@"db\s+volume\s+16M", table);
        Assert.Equal([new ChangedRangeDto(4096, 4096)], diff.Ranges);
        Assert.Contains("1 range(s), 4K changed", diffTable, StringComparison.Ordinal);
        Assert.StartsWith("db@pre-rollback", rollback.PreRollbackSnapshot!.Address, StringComparison.Ordinal);
        Assert.Empty(afterRollback.Ranges);
        Assert.Equal(["db", "db-copy"], volumes.Select(v => v.Name));
        Assert.Contains(snapshots, s => s.Name == "s1");
        Assert.Equal(["db-copy@nightly", "db@nightly"], groupSnapshots.Select(s => s.Address).Order(StringComparer.Ordinal));
        Assert.Equal(0, verify.ExitCode);
        Assert.Contains("pool is clean", verify.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("capacity:", pool, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1, "not-found", "volume", "show", "ghost")]
    [InlineData(2, "not a size", "volume", "create", "x", "--size", "ten")]
    [InlineData(2, "VOLUME@SNAPSHOT", "snapshot", "delete", "no-at-sign")]
    [InlineData(1, "invalid-name", "volume", "create", "bad name", "--size", "1M")]
    [InlineData(1, "already-exists", "volume", "create", "dup", "--size", "1M")]
    public async Task Cli_BadInput_ExitsNonZeroWithOneLineMessage(int exitCode, string expected, params string[] arguments)
    {
        (await RunAsync("volume", "create", "dup", "--size", "1M")).AssertSuccess();

        var result = await RunAsync(arguments);

        Assert.Equal(exitCode, result.ExitCode);
        var line = Assert.Single(result.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cli_WrongToken_ExitsWithUnauthorized()
    {
        var result = await CliProcess.RunAsync("volume", "list", "--data", Data, "--token", "wrong");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("[unauthorized]", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cli_EnvironmentVariables_FindServerAndToken()
    {
        var environment = new Dictionary<string, string?> { ["TIDEMARK_SERVER"] = Server.Http.ToString(), ["TIDEMARK_TOKEN"] = Server.Token };

        var result = await CliProcess.RunAsync(environment, "volume", "list", "--data", Temp.Combine("nowhere"), "--json");

        result.AssertSuccess();
        Assert.Equal("[]", result.StandardOutput.Trim());
    }

    [Fact]
    public async Task Cli_NoServerThere_ExitsUnreachableWithHint()
    {
        var result = await CliProcess.RunAsync("volume", "list", "--server", "http://127.0.0.1:1", "--token", "x");

        Assert.Equal(3, result.ExitCode);
        Assert.Contains("tidemark serve", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cli_NoTokenAnywhere_ExitsWithHowToFix()
    {
        var result = await CliProcess.RunAsync("volume", "list", "--data", Temp.Combine("empty"));

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--token", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Serve_Help_DocumentsEverySetting()
    {
        var help = (await CliProcess.RunAsync("serve", "--help")).AssertSuccess().StandardOutput;

        foreach (var setting in new[] { "--data", "--config", "--http", "--nbd", "--iscsi", "--replication", "--replication-retry-delay", "--tls-cert", "--tls-key", "--store-capacity", "--store-path", "--map-cache", "--metadata-cache", "--log-level" })
        {
            Assert.Contains(setting, help, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("Option '--size' is required", "volume", "create", "x")]
    [InlineData("'volumez'", "volumez", "list")]
    [InlineData("--size must be larger than 0", "volume", "create", "x", "--size", "0")]
    [InlineData("not a size", "volume", "create", "x", "--size", "-5G")]
    [InlineData("serve does not use --token", "serve", "--token", "t")]
    public async Task Cli_BadInput_ExitsTwoNamingTheProblem(string expected, params string[] arguments)
    {
        var result = await RunAsync(arguments);

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: ", result.StandardError, StringComparison.Ordinal);
        Assert.Contains(expected, result.StandardError, StringComparison.Ordinal);
        Assert.Empty(result.StandardOutput);
    }

    [Fact]
    public async Task Cli_SizeAboveTheLimit_ServerRefusesWithTheExactByteCount()
    {
        var result = await RunAsync("volume", "create", "x", "--size", "100P");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains($"not {100L << 50} bytes", result.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Serve_Help_ListsNoClientOnlyOptionsAndNamesTheReplicationListener()
    {
        var help = (await CliProcess.RunAsync("serve", "--help")).AssertSuccess().StandardOutput;
        var volumeHelp = (await CliProcess.RunAsync("volume", "list", "--help")).AssertSuccess().StandardOutput;

        foreach (var clientOnly in new[] { "--server", "--token", "--ca-cert", "--json" })
        {
            Assert.DoesNotContain(clientOnly, help, StringComparison.Ordinal);
            Assert.Contains(clientOnly, volumeHelp, StringComparison.Ordinal);
        }

        Assert.Contains("the replication listener", help, StringComparison.Ordinal);
    }

    private Task<ProcessResult> RunAsync(params string[] arguments) => CliProcess.RunAsync([.. arguments, "--data", Data]);

    private static T Json<T>(ProcessResult result) =>
        JsonSerializer.Deserialize<T>(result.AssertSuccess().StandardOutput, ApiJson.Options)
        ?? throw new InvalidOperationException($"{result.Command} printed no JSON");
}
