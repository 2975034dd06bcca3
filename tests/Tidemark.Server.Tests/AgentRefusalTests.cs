using System.Net;
using Tidemark.Agent;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// An agent that answers but refuses (4xx) has said what is wrong with the request: the job and the
/// API answer carry the agent's code and message, not "unavailable" as for an agent that is down.
/// </summary>
public sealed class AgentRefusalTests : ServerTest
{
    [Fact]
    public async Task MailRecovery_AgentRefusesTheRequest_JobFailsAsInvalidArgumentWithTheAgentsMessage()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        var directory = Temp.Combine("agent");
        new AgentConfig
        {
            Name = "mx1",
            Listen = "127.0.0.1:0",
            Servers = [new AgentServerEntry(identity.Fingerprint, DateTimeOffset.UtcNow)],
        }.Save(directory);
        await using var agent = await AgentHost.StartAsync(directory);
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await client.CreateSnapshotAsync("mail", "monday");
        await client.AddHostAsync(new AddHostRequest("mx1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));

        // The server passes the store format on; the agent is the one that knows the formats.
        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => client.RecoverMailAsync(new MailRecoveryJobRequest("mx1", "mail@monday", Format: "bogus")));

        // The client follows the job (202) and reports its failure as a conflict with the job's own code.
        Assert.Equal((HttpStatusCode.Conflict, "invalid-argument"), (refused.Status, refused.Code));
        Assert.Contains("agent mx1 refused", refused.Message, StringComparison.Ordinal);
        Assert.Contains("mail store format 'bogus'", refused.Message, StringComparison.Ordinal);
        var job = Assert.Single(await client.ListJobsAsync(), j => j.Kind == "recovery.mail");
        Assert.Equal(("failed", "invalid-argument"), (job.State, job.ErrorCode));
        Assert.Contains("mail store format 'bogus'", job.Error, StringComparison.Ordinal);
        Assert.Equal(["mail"], (await client.ListVolumesAsync()).Select(v => v.Name));
    }
}
