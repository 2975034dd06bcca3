using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

public sealed class HandshakeTests
{
    [Fact]
    public async Task Greeting_OnConnect_SendsMagicsAndFixedNewstyleWithNoZeroes()
    {
        await using var server = NbdServerHarness.Start();

        var flags = await server.Client.ReadGreetingAsync();

        Assert.Equal(NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes, flags);
    }

    [Fact]
    public async Task ClientFlags_UnknownBit_EndsConnectionAsViolation()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();

        await server.Client.SendClientFlagsAsync((NbdClientFlags)0x80);

        var end = await server.EndAsync();
        Assert.Equal(NbdSessionEndReason.ProtocolViolation, end.Reason);
        Assert.Empty(await server.Client.ReadToEndAsync());
    }

    [Fact]
    public async Task ExportName_KnownExport_SendsSizeFlagsAndZeroPadding()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        await server.Client.SendOptionAsync(NbdOptionType.ExportName, "vol"u8);

        var reply = await server.Client.ReadExactAsync(10 + 124);
        Assert.Equal((ulong)server.Device.SizeBytes, BinaryPrimitives.ReadUInt64BigEndian(reply));
        var flags = (NbdTransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8));
        Assert.True(flags.HasFlag(NbdTransmissionFlags.HasFlags | NbdTransmissionFlags.SendFlush | NbdTransmissionFlags.CanMultiConn));
        Assert.All(reply.AsSpan(10).ToArray(), b => Assert.Equal(0, b));

        // Transmission works right after.
        await server.Client.SendRequestAsync(NbdCommand.Flush, 7, 0, 0);
        var flush = await server.Client.ReadSimpleReplyAsync();
        Assert.Equal(NbdError.None, flush.Error);
        Assert.Equal(7ul, flush.Cookie);
    }

    [Fact]
    public async Task ExportName_WithNoZeroes_OmitsPadding()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes);

        await server.Client.SendOptionAsync(NbdOptionType.ExportName, []);
        await server.Client.ReadExactAsync(10);
        await server.Client.SendRequestAsync(NbdCommand.Flush, 9, 0, 0);

        // The next bytes are the flush reply, not padding.
        Assert.Equal(9ul, (await server.Client.ReadSimpleReplyAsync()).Cookie);
    }

    [Fact]
    public async Task ExportName_UnknownExport_EndsSession()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        await server.Client.SendOptionAsync(NbdOptionType.ExportName, "nope"u8);

        Assert.Equal(NbdSessionEndReason.UnknownExport, (await server.EndAsync()).Reason);
        Assert.Empty(await server.Client.ReadToEndAsync());
    }

    [Fact]
    public async Task Abort_DuringOptions_AcksAndCloses()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        var reply = (await server.Client.OptionAsync(NbdOptionType.Abort)).Single();

        Assert.Equal(NbdOptionReplyType.Ack, reply.Type);
        Assert.Equal(NbdOptionType.Abort, reply.Option);
        Assert.Equal(NbdSessionEndReason.ClientAborted, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task PeerClose_BeforeClientFlags_EndsAsPeerClosed()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();

        await server.Client.CompleteAsync();

        Assert.Equal(NbdSessionEndReason.PeerClosed, (await server.EndAsync()).Reason);
    }

    [Theory]
    [InlineData(NbdOptionType.PeekExport)]
    [InlineData(NbdOptionType.ExtendedHeaders)]
    [InlineData((NbdOptionType)0x1234)]
    public async Task UnknownOption_Any_RepliesUnsupportedAndContinues(NbdOptionType option)
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        var reply = (await server.Client.OptionAsync(option, "x"u8)).Single();

        Assert.Equal(NbdOptionReplyType.ErrorUnsupported, reply.Type);
        Assert.Equal(option, reply.Option);
        Assert.NotEmpty(reply.Data);
        var go = await server.Client.OptionAsync(NbdOptionType.Go, NbdTestClient.InfoData("vol"));
        Assert.Equal(NbdOptionReplyType.Ack, go[^1].Type);
    }

    [Fact]
    public async Task StartTls_WithoutHook_RepliesUnsupported()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        var reply = (await server.Client.OptionAsync(NbdOptionType.StartTls)).Single();

        Assert.Equal(NbdOptionReplyType.ErrorUnsupported, reply.Type);
    }

    [Fact]
    public async Task StartTls_WithHook_AcksUpgradesAndForgetsStructuredReplies()
    {
        var upgrades = 0;
        var options = new NbdServerOptions
        {
            StartTls = (transport, _) =>
            {
                // A pass-through "TLS" layer: the hook gets the raw transport and returns the new one.
                Interlocked.Increment(ref upgrades);
                return ValueTask.FromResult<IDuplexPipe>(new DuplexPipe(transport.Input, transport.Output));
            },
        };
        await using var server = NbdServerHarness.Start(options: options);
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        await server.Client.OptionAsync(NbdOptionType.StructuredReply);

        var ack = (await server.Client.OptionAsync(NbdOptionType.StartTls)).Single();
        var again = (await server.Client.OptionAsync(NbdOptionType.StartTls)).Single();
        var meta = await server.Client.OptionAsync(NbdOptionType.SetMetaContext, NbdTestClient.MetaContextData("vol", "base:allocation"));

        Assert.Equal(NbdOptionReplyType.Ack, ack.Type);
        Assert.Equal(1, upgrades);
        Assert.Equal(NbdOptionReplyType.ErrorInvalid, again.Type);
        Assert.Equal(NbdOptionReplyType.ErrorInvalid, meta.Single().Type);
    }

    [Fact]
    public async Task Options_BeyondCap_EndConnection()
    {
        await using var server = NbdServerHarness.Start(options: new NbdServerOptions { MaxOptionsPerConnection = 3 });
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        for (var i = 0; i < 3; i++)
        {
            await server.Client.OptionAsync(NbdOptionType.List);
        }

        await server.Client.SendOptionAsync(NbdOptionType.List);

        Assert.Equal(NbdSessionEndReason.ProtocolViolation, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task List_TwoExports_SendsServerReplyPerExportThenAck()
    {
        var catalog = new NbdExportCatalog();
        catalog.Set(new NbdExport("b", new MemoryBlockDevice(4096), "second"));
        catalog.Set(new NbdExport("a", new MemoryBlockDevice(4096)));
        await using var server = NbdServerHarness.Start(catalog: catalog);
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        var replies = await server.Client.OptionAsync(NbdOptionType.List);

        Assert.Equal(3, replies.Count);
        Assert.Equal(NbdOptionReplyType.Ack, replies[2].Type);
        Assert.All(replies.Take(2), r => Assert.Equal(NbdOptionReplyType.Server, r.Type));
        Assert.Equal(("a", ""), ParseServer(replies[0].Data));
        Assert.Equal(("b", "second"), ParseServer(replies[1].Data));
    }

    [Fact]
    public async Task List_WithData_RepliesInvalid()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);

        var reply = (await server.Client.OptionAsync(NbdOptionType.List, "junk"u8)).Single();

        Assert.Equal(NbdOptionReplyType.ErrorInvalid, reply.Type);
    }

    private static (string Name, string Description) ParseServer(byte[] data)
    {
        var nameLength = (int)BinaryPrimitives.ReadUInt32BigEndian(data);
        return (Encoding.UTF8.GetString(data, 4, nameLength), Encoding.UTF8.GetString(data, 4 + nameLength, data.Length - 4 - nameLength));
    }
}
