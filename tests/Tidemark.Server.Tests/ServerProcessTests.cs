using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The test host itself (TestKit's ServerProcess, ServerTest, ADR 0020): disposing stops a server as
/// an operator would (SIGTERM), so the server cleans up after itself; only KillAsync is a crash.
/// </summary>
public sealed class ServerProcessTests : ServerTest
{
    [Fact]
    public async Task Dispose_StopsCleanly_AndClientFollowsTheRestartedServer()
    {
        var runtime = Path.Combine(Data, "server.json");
        var first = Client;
        Assert.True(File.Exists(runtime));

        await Server.DisposeAsync();
        var leftAfterStop = File.Exists(runtime);
        Server = await ServerProcess.StartAsync(Data);
        var events = await Client.ListEventsAsync(kind: "server.stop");

        Assert.False(leftAfterStop, "server.json is deleted by a clean stop only; a kill leaves it");
        Assert.Single(events);
        Assert.NotSame(first, Client);
        Assert.Equal(Server.Http, Client.BaseAddress);
    }

    [Fact]
    public async Task Kill_IsACrash_TheServerLeavesItsRuntimeFileAndRecordsNoStop()
    {
        await Server.KillAsync();
        await Server.DisposeAsync();
        var leftAfterKill = File.Exists(Path.Combine(Data, "server.json"));
        Server = await ServerProcess.StartAsync(Data);

        Assert.True(leftAfterKill);
        Assert.Empty(await Client.ListEventsAsync(kind: "server.stop"));
    }
}
