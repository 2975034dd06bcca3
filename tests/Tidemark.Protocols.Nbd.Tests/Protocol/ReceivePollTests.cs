using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

/// <summary>
/// The transport's receive poll stops for a connection whose device answers in network round trips
/// (PreferredConcurrency above 1, a RADOS-backed volume; IConnectionPhase.StopReceivePoll) and stays
/// for one on a local store, whose 4K answers at queue depth 1 it speeds up.
/// </summary>
public sealed class ReceivePollTests
{
    [Theory]
    [InlineData(32, 1)]
    [InlineData(2, 1)]
    [InlineData(1, 0)]
    public async Task TheReceivePoll_StopsOnlyWhenTheDeviceAnswersInRoundTrips(int preferredConcurrency, int expectedStops)
    {
        var phase = new RecordingPhase();
        await using var server = NbdServerHarness.Start(new ConcurrencyDevice(new MemoryBlockDevice(1024 * 1024), preferredConcurrency), phase: phase);
        await server.Client.HandshakeAsync(NbdServerHarness.ExportName);

        // A READ answered: transmission runs, so whatever the connection tells its transport was told.
        await server.Client.SendAsync(NbdTestClient.Request(NbdCommand.Read, 7, 0, 4096));
        var reply = await server.Client.ReadSimpleReplyAsync();
        await server.Client.ReadExactAsync(4096);

        Assert.Equal(NbdError.None, reply.Error);
        Assert.Equal(1, phase.Entered);
        Assert.Equal(expectedStops, phase.PollStops);
    }

    [Fact]
    public async Task ANegotiationThatEndsWithoutAnExport_TellsTheTransportNothing()
    {
        var phase = new RecordingPhase();
        await using var server = NbdServerHarness.Start(new ConcurrencyDevice(new MemoryBlockDevice(1024 * 1024), 32), phase: phase);
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        await server.Client.OptionAsync(NbdOptionType.Abort);

        Assert.Equal(NbdSessionEndReason.ClientAborted, (await server.EndAsync()).Reason);

        Assert.Equal(0, phase.Entered);
        Assert.Equal(0, phase.PollStops);
    }
}
