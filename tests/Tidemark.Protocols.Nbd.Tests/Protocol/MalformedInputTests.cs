using System.IO.Pipelines;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

public sealed class MalformedInputTests
{
    [Fact]
    public async Task Request_BadMagic_EndsOnlyThatConnection()
    {
        var bad = NbdServerHarness.Start();
        var catalog = bad.Catalog;
        await using var good = NbdServerHarness.Start(bad.Device, catalog: catalog);
        await bad.Client.HandshakeAsync("vol");
        await good.Client.HandshakeAsync("vol");
        var request = NbdTestClient.Request(NbdCommand.Flush, 1, 0, 0);
        request[0] ^= 0xff;

        await bad.Client.SendAsync(request);

        var end = await bad.EndAsync();
        Assert.Equal(NbdSessionEndReason.ProtocolViolation, end.Reason);
        Assert.Contains("magic", end.Message, StringComparison.Ordinal);
        Assert.Empty(await bad.Client.ReadToEndAsync());
        await good.Client.SendRequestAsync(NbdCommand.Flush, 2, 0, 0);
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 2), await good.Client.ReadSimpleReplyAsync());
        await bad.DisposeAsync();
    }

    [Fact]
    public async Task Request_BadMagicAfterGoodOnes_RepliesToGoodOnesFirst()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");
        var bad = NbdTestClient.Request(NbdCommand.Flush, 2, 0, 0);
        bad[3] = 0;

        await server.Client.SendAsync(NbdTestClient.Request(NbdCommand.Flush, 1, 0, 0).Concat(bad).ToArray());

        Assert.Equal(1ul, (await server.Client.ReadSimpleReplyAsync()).Cookie);
        Assert.Equal(NbdSessionEndReason.ProtocolViolation, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task Option_BadMagic_EndsConnection()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        var option = NbdTestClient.Option(NbdOptionType.List, []);
        option[7] ^= 1;

        await server.Client.SendAsync(option);

        Assert.Equal(NbdSessionEndReason.ProtocolViolation, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task Option_HugeLength_EndsConnectionBeforeDataArrives()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        var header = new byte[NbdOptionHeader.SizeBytes];
        new NbdOptionHeader(NbdMagic.IHaveOpt, NbdOptionType.Go, uint.MaxValue).WriteTo(header);

        await server.Client.SendAsync(header);

        var end = await server.EndAsync();
        Assert.Equal(NbdSessionEndReason.ProtocolViolation, end.Reason);
        Assert.Contains("cap", end.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Write_HugeLength_EndsConnectionBeforePayloadArrives()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Write, 1, 0, uint.MaxValue);

        Assert.Equal(NbdSessionEndReason.ProtocolViolation, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task Request_Truncated_EndsAsTruncatedFrame()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendAsync(NbdTestClient.Request(NbdCommand.Read, 1, 0, 512).AsMemory(0, 20));
        await server.Client.CompleteAsync();

        Assert.Equal(NbdSessionEndReason.TruncatedFrame, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task Write_PayloadTruncated_EndsAsTruncatedFrame()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendAsync(NbdTestClient.Request(NbdCommand.Write, 1, 0, 4096, payload: new byte[4096]).AsMemory(0, 1000));
        await server.Client.CompleteAsync();

        Assert.Equal(NbdSessionEndReason.TruncatedFrame, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task Option_Truncated_EndsAsTruncatedFrame()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        await server.Client.SendAsync(NbdTestClient.Option(NbdOptionType.Go, NbdTestClient.InfoData("vol")).AsMemory(0, 20));
        await server.Client.CompleteAsync();

        Assert.Equal(NbdSessionEndReason.TruncatedFrame, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task PeerClose_BetweenRequests_EndsAsPeerClosed()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.CompleteAsync();

        Assert.Equal(NbdSessionEndReason.PeerClosed, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task Abort_WhileWaitingForRequest_EndsSession()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        server.Connection.Abort();

        Assert.Equal(NbdSessionEndReason.Aborted, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task Abort_WhileBlockedOnClientNotReading_EndsSession()
    {
        var small = new PipeOptions(pauseWriterThreshold: 16 * 1024, resumeWriterThreshold: 8 * 1024, useSynchronizationContext: false);
        await using var server = NbdServerHarness.Start(serverToClient: small);
        await server.Client.HandshakeAsync("vol");

        // 1 MiB of read replies that the client never reads: the server's flush blocks.
        await server.Client.SendAsync(NbdTestClient.Request(NbdCommand.Read, 1, 0, 1024 * 1024));
        await Task.Delay(100);
        server.Connection.Abort();

        Assert.Equal(NbdSessionEndReason.Aborted, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task RunAsync_Cancelled_EndsSessionAsAborted()
    {
        var (serverPipe, clientPipe) = DuplexPipe.CreatePair();
        var catalog = new NbdExportCatalog();
        using var cts = new CancellationTokenSource();
        var session = new NbdConnection(serverPipe, catalog).RunAsync(cts.Token);
        await new NbdTestClient(clientPipe).ReadGreetingAsync();

        await cts.CancelAsync();

        Assert.Equal(NbdSessionEndReason.Aborted, (await session.WaitAsync(NbdTestClient.Timeout)).Reason);
    }
}
