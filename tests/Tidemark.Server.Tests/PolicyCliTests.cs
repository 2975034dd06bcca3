using System.Text.Json;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Policies through the CLI of a real server, surviving kill -9.</summary>
public sealed class PolicyCliTests : ServerTest
{
    private Task<ProcessResult> Cli(params string[] arguments) => CliProcess.RunAsync([.. arguments, "--data", Server.DataDirectory]);

    [Fact]
    public async Task CreateRunShowDelete_ThroughTheCli_AndPoliciesSurviveKill()
    {
        (await Cli("volume", "create", "mail", "--size", "16M")).AssertSuccess();
        (await Cli("policy", "create", "nightly", "--volume", "mail", "--daily", "02:30", "--zone", "Europe/Berlin", "--keep-daily", "7", "--keep-weekly", "4")).AssertSuccess();
        (await Cli("policy", "create", "churn", "--volume", "mail", "--changed", "512M", "--keep-last", "2")).AssertSuccess();
        var run1 = JsonSerializer.Deserialize<PolicyDto>((await Cli("policy", "run", "churn", "--json")).AssertSuccess().StandardOutput, ApiJson.Options)!;
        (await Cli("policy", "run", "churn")).AssertSuccess();
        await Task.Delay(1100); // snapshot names carry the second
        (await Cli("policy", "run", "churn")).AssertSuccess();
        var table = (await Cli("policy", "list")).AssertSuccess().StandardOutput;
        var refusedDelete = await Cli("volume", "delete", "mail");

        await Server.KillAsync();
        await Server.DisposeAsync();
        Server = await ServerProcess.StartAsync(Data);
        var shown = (await Cli("policy", "show", "churn")).AssertSuccess().StandardOutput;
        using var client = Server.Client();
        var churn = await client.GetPolicyAsync("churn");
        (await Cli("policy", "delete", "churn")).AssertSuccess();
        (await Cli("policy", "delete", "nightly")).AssertSuccess();
        var snapshotsLeft = await client.ListSnapshotsAsync("mail");

        Assert.Single(run1.Snapshots);
        Assert.Contains("nightly", table, StringComparison.Ordinal);
        Assert.Contains("daily 02:30", table, StringComparison.Ordinal);
        Assert.Contains("7 daily, 4 weekly", table, StringComparison.Ordinal);
        Assert.Equal(1, refusedDelete.ExitCode);
        Assert.Contains("policy delete", refusedDelete.StandardError, StringComparison.Ordinal);
        Assert.Equal(2, churn.Snapshots.Count); // keep-last 2 of three runs
        Assert.Contains("delete", shown, StringComparison.Ordinal);
        Assert.Equal(churn.Snapshots, snapshotsLeft.Select(s => s.Name)); // deleting a policy keeps its snapshots
    }

    [Fact]
    public async Task Update_ChangesOnlyWhatIsGiven_PausesAndResumes()
    {
        (await Cli("volume", "create", "mail", "--size", "16M")).AssertSuccess();
        (await Cli("policy", "create", "nightly", "--volume", "mail", "--daily", "02:30", "--keep-daily", "7")).AssertSuccess();

        var retention = JsonSerializer.Deserialize<PolicyDto>((await Cli("policy", "update", "nightly", "--keep-weekly", "4", "--json")).AssertSuccess().StandardOutput, ApiJson.Options)!;
        var rescheduled = JsonSerializer.Deserialize<PolicyDto>((await Cli("policy", "update", "nightly", "--every", "6h", "--disabled", "--json")).AssertSuccess().StandardOutput, ApiJson.Options)!;
        var resumed = JsonSerializer.Deserialize<PolicyDto>((await Cli("policy", "update", "nightly", "--enable", "--json")).AssertSuccess().StandardOutput, ApiJson.Options)!;
        var both = await Cli("policy", "update", "nightly", "--enable", "--disabled");
        var missing = await Cli("policy", "update", "weekly", "--keep-last", "3");

        Assert.Equal(("daily 02:30", 7, 4), (retention.Definition.Schedule, retention.Definition.KeepDaily, retention.Definition.KeepWeekly));
        Assert.Equal(("every 6h", 7, false), (rescheduled.Definition.Schedule, rescheduled.Definition.KeepDaily, rescheduled.Definition.Enabled));
        Assert.True(resumed.Definition.Enabled);
        Assert.Equal("every 6h", resumed.Definition.Schedule);
        Assert.Equal(2, both.ExitCode);
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("weekly", missing.StandardError, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("policy", "create", "p", "--volume", "nope", "--every", "5m")]
    [InlineData("policy", "create", "p", "--volume", "mail")]
    [InlineData("policy", "create", "p", "--volume", "mail", "--every", "5 fortnights")]
    [InlineData("policy", "create", "p", "--volume", "mail", "--cron", "61 * * * *")]
    [InlineData("policy", "create", "p", "--volume", "mail", "--every", "5m", "--keep-last", "0")]
    public async Task BadPolicies_AreRefusedWithAMessage_AndNothingIsCreated(params string[] arguments)
    {
        (await Cli("volume", "create", "mail", "--size", "16M")).AssertSuccess();

        var result = await Cli(arguments);
        using var client = Server.Client();

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("error: ", result.StandardError, StringComparison.Ordinal);
        Assert.Empty(await client.ListPoliciesAsync());
    }

    [Fact]
    public async Task ConflictingScheduleFlags_AreABadInputExit()
    {
        var result = await Cli("policy", "create", "p", "--volume", "mail", "--every", "5m", "--daily", "02:00");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("one schedule", result.StandardError, StringComparison.Ordinal);
    }
}
