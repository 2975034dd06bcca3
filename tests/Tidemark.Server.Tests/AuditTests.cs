using System.Net;
using System.Text.Json;
using Tidemark.Api;
using Tidemark.Server.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Every change through the API lands in the audit log of a real server, with who, what and whether it worked.</summary>
public sealed class AuditTests : ServerTest
{
    [Fact]
    public async Task Changes_AreAuditedWithActorSubjectAndOutcome()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await client.CreateSnapshotAsync("mail", "monday");
        await client.HoldSnapshotAsync("mail@monday", new HoldRequest(Reason: "legal"));
        await Assert.ThrowsAsync<TidemarkApiException>(() => client.DeleteSnapshotAsync("mail@monday"));
        await client.ListVolumesAsync();
        using (var stranger = Server.Client("0000000000000000000000000000000000000000000000000000000000000000"))
        {
            await Assert.ThrowsAsync<TidemarkApiException>(() => stranger.DeleteVolumeAsync("mail"));
        }

        var events = await client.ListEventsAsync();

        var actor = TokenStore.FirstTokenName;
        var changes = events.Where(e => e.Kind != "server.start").ToList();
        Assert.Equal(["volume.create", "snapshot.create", "snapshot.hold", "snapshot.delete", "auth.failed"], changes.Select(e => e.Kind));
        Assert.Equal(["mail", "mail@monday", "mail@monday", "mail@monday", null], changes.Select(e => e.Subject));
        Assert.All(changes.Take(4), e => Assert.Equal(actor, e.Actor));
        Assert.Equal(["ok", "ok", "ok", "failed", "failed"], changes.Select(e => e.Outcome));
        Assert.Contains("held", changes[3].Message, StringComparison.Ordinal);
        Assert.Equal("anonymous", changes[4].Actor);
        Assert.Equal("127.0.0.1", changes[0].Remote);
        Assert.Contains(events, e => e.Kind == "server.start" && e.Actor == "server");
    }

    [Fact]
    public async Task Events_SurviveKillAndRestart_AndSequenceContinues()
    {
        using (var client = Server.Client())
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        }

        await Server.KillAsync();
        await Server.DisposeAsync();
        Server = await ServerProcess.StartAsync(Data);
        using var again = Server.Client();
        await again.CreateSnapshotAsync("db", "after-restart");

        var events = await again.ListEventsAsync();

        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Sequence));
        Assert.Equal(["server.start", "volume.create", "server.start", "snapshot.create"], events.Select(e => e.Kind));
    }

    [Fact]
    public async Task Cli_EventList_FiltersAndPrintsOneJsonArray()
    {
        using (var client = Server.Client())
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest("web", 16 << 20));
            await client.CreateSnapshotAsync("web", "a");
            await client.CreateSnapshotAsync("web", "b");
        }

        var json = (await CliProcess.RunAsync("event", "list", "--kind", "snapshot", "--json", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput;
        var table = (await CliProcess.RunAsync("event", "list", "--subject", "web", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput;
        var bad = await CliProcess.RunAsync("event", "list", "--limit", "0", "--data", Server.DataDirectory);

        var lines = JsonSerializer.Deserialize<List<EventDto>>(json, ApiJson.Options)!;
        Assert.Equal(["web@a", "web@b"], lines.Select(e => e.Subject));
        Assert.Contains("volume.create", table, StringComparison.Ordinal);
        Assert.DoesNotContain("snapshot.create", table, StringComparison.Ordinal);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("limit must be between 1 and", bad.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cli_EventList_RefusedRequestsShowMerged_InTheirOwnLog_AndAfterPagesTheMainLog()
    {
        using (var client = Server.Client())
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest("web", 16 << 20));
            await Assert.ThrowsAsync<TidemarkApiException>(() => client.DeleteVolumeAsync("nope"));
            await client.DeleteVolumeAsync("web");
        }

        var merged = JsonSerializer.Deserialize<List<EventDto>>((await CliProcess.RunAsync("event", "list", "--json", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput, ApiJson.Options)!;
        var refused = JsonSerializer.Deserialize<List<EventDto>>((await CliProcess.RunAsync("event", "list", "--log", "refused", "--json", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput, ApiJson.Options)!;
        var paged = JsonSerializer.Deserialize<List<EventDto>>((await CliProcess.RunAsync("event", "list", "--after", "0", "--json", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput, ApiJson.Options)!;
        var verify = (await CliProcess.RunAsync("event", "verify", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput;
        var badLog = await CliProcess.RunAsync("event", "list", "--log", "other", "--data", Server.DataDirectory);

        var failed = Assert.Single(refused);
        Assert.Equal(("volume.delete", "nope", "failed", "refused", 1L), (failed.Kind, failed.Subject, failed.Outcome, failed.Log, failed.Sequence));
        Assert.Equal(["volume.create", "volume.delete", "volume.delete"], merged.Where(e => e.Kind.StartsWith("volume", StringComparison.Ordinal)).Select(e => e.Kind));
        Assert.Equal(["main", "refused", "main"], merged.Where(e => e.Kind.StartsWith("volume", StringComparison.Ordinal)).Select(e => e.Log));
        Assert.All(paged, e => Assert.Equal("main", e.Log));
        Assert.Equal(Enumerable.Range(1, paged.Count).Select(i => (long)i), paged.Select(e => e.Sequence));
        Assert.DoesNotContain(File.ReadAllText(Path.Combine(Server.DataDirectory, "events.jsonl")), "nope", StringComparison.Ordinal);
        Assert.Contains("the refused-requests log is intact: 1 records", verify, StringComparison.Ordinal);
        Assert.Equal(1, badLog.ExitCode);
        Assert.Contains("log must be 'main'", badLog.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cli_EventVerify_IntactThenEditedRecord_SaysWhereItBreaks()
    {
        using (var client = Server.Client())
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest("web", 16 << 20));
            await client.DeleteVolumeAsync("web");
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        }

        var intact = (await CliProcess.RunAsync("event", "verify", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput;
        var path = Path.Combine(Server.DataDirectory, "events.jsonl");
        var lines = await File.ReadAllLinesAsync(path);
        var edited = Array.FindIndex(lines, l => l.Contains("volume.delete", StringComparison.Ordinal));
        lines[edited] = lines[edited].Replace("\"admin\"", "\"alice\"", StringComparison.Ordinal);
        await File.WriteAllLinesAsync(path, lines);
        var broken = await CliProcess.RunAsync("event", "verify", "--data", Server.DataDirectory);

        Assert.Contains("intact: 4 records", intact, StringComparison.Ordinal);
        Assert.Equal(1, broken.ExitCode);
        Assert.Contains($"events.jsonl line {edited + 2}", broken.StandardError, StringComparison.Ordinal);
        Assert.Contains($"does not link to record {edited + 1}", broken.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RollbackPolicyAndVolumeDelete_EventsNameWhatHappened()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await client.CreateSnapshotAsync("mail", "a");
        await client.CreatePolicyAsync(new PolicyRequest("hourly", Volume: "mail", Schedule: "hourly"));
        var run = await client.RunPolicyAsync("hourly");
        var rollback = await client.RollbackAsync("mail", "a");
        await client.DeletePolicyAsync("hourly");
        await client.DeleteVolumeAsync("mail");

        var events = await client.ListEventsAsync(kind: "snapshot");
        var rolledBack = Assert.Single(await client.ListEventsAsync(kind: "volume.rollback"));

        var policySnapshot = $"mail@{Assert.Single(run.Snapshots)}";
        Assert.Contains(events, e => e.Kind == "snapshot.create" && e.Subject == policySnapshot && e.Actor == "policy:hourly");
        Assert.Contains("rolled mail back to mail@a", rolledBack.Message, StringComparison.Ordinal);
        Assert.Contains(rollback.PreRollbackSnapshot is { } kept ? $"kept as mail@{kept.Name}" : "no pre-rollback snapshot", rolledBack.Message, StringComparison.Ordinal);
        var destroyed = events.Where(e => e.Kind == "snapshot.delete").ToList();
        Assert.Equal(
            new[] { "mail@a", policySnapshot }.Concat(rollback.PreRollbackSnapshot is { } k ? [$"mail@{k.Name}"] : []).Order(StringComparer.Ordinal),
            destroyed.Select(e => e.Subject!).Order(StringComparer.Ordinal));
        Assert.All(destroyed, e => Assert.Contains("destroyed with volume mail", e.Message, StringComparison.Ordinal));
        Assert.All(destroyed, e => Assert.Equal(TokenStore.FirstTokenName, e.Actor));
    }

    [Fact]
    public async Task EventsResource_BadQuery_Returns400()
    {
        using var http = new HttpClient { BaseAddress = Server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Server.Token);

        using var response = await http.GetAsync("api/v1/events?after=-3");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }
}
