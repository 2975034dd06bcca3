using System.Buffers.Binary;
using System.Text;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

public sealed class OptionTests
{
    [Fact]
    public async Task Info_KnownExport_SendsExportNameDescriptionAndBlockSize()
    {
        await using var server = NbdServerHarness.Start(new MemoryBlockDevice(8 * 1024 * 1024, logicalBlockSizeBytes: 4096));
        await StartOptionsAsync(server);

        var replies = await server.Client.OptionAsync(NbdOptionType.Info, NbdTestClient.InfoData("vol", NbdInfoType.Name, NbdInfoType.Description, NbdInfoType.BlockSize));

        Assert.Equal(NbdOptionReplyType.Ack, replies[^1].Type);
        var infos = replies.Where(r => r.Type == NbdOptionReplyType.Info)
            .ToDictionary(r => (NbdInfoType)BinaryPrimitives.ReadUInt16BigEndian(r.Data), r => r.Data[2..]);
        var export = NbdTestClient.ParseInfoExport(replies.First(r => r.Data[1] == (byte)NbdInfoType.Export));
        Assert.Equal(8ul * 1024 * 1024, export.SizeBytes);
        Assert.False(export.Flags.HasFlag(NbdTransmissionFlags.ReadOnly));
        Assert.True(export.Flags.HasFlag(NbdTransmissionFlags.SendWriteZeroes | NbdTransmissionFlags.SendFastZero | NbdTransmissionFlags.SendTrim | NbdTransmissionFlags.SendFua | NbdTransmissionFlags.SendCache));
        Assert.False(export.Flags.HasFlag(NbdTransmissionFlags.SendDf));
        Assert.Equal("vol", Encoding.UTF8.GetString(infos[NbdInfoType.Name]));
        Assert.Equal(NbdServerHarness.ExportDescription, Encoding.UTF8.GetString(infos[NbdInfoType.Description]));
        var blockSize = infos[NbdInfoType.BlockSize];
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(blockSize));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(blockSize.AsSpan(4)));
        Assert.Equal(32u * 1024 * 1024, BinaryPrimitives.ReadUInt32BigEndian(blockSize.AsSpan(8)));

        // INFO does not end the handshake.
        Assert.Equal(NbdOptionReplyType.Ack, (await server.Client.OptionAsync(NbdOptionType.StructuredReply)).Single().Type);
    }

    [Fact]
    public async Task Info_UnknownExport_RepliesUnknown()
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);

        var reply = (await server.Client.OptionAsync(NbdOptionType.Info, NbdTestClient.InfoData("missing"))).Single();

        Assert.Equal(NbdOptionReplyType.ErrorUnknown, reply.Type);
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0 })]
    [InlineData(new byte[] { 0, 0, 0, 9, 0, 0 })]
    [InlineData(new byte[] { 0, 0, 0, 0, 0, 2, 0, 1 })]
    [InlineData(new byte[] { 0, 0, 0, 1, 0, 0, 0 })]
    public async Task Go_MalformedData_RepliesInvalidAndContinues(byte[] data)
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);

        var reply = (await server.Client.OptionAsync(NbdOptionType.Go, data)).Single();

        Assert.Equal(NbdOptionReplyType.ErrorInvalid, reply.Type);
        Assert.Equal(NbdOptionReplyType.Ack, (await server.Client.OptionAsync(NbdOptionType.Go, NbdTestClient.InfoData("vol")))[^1].Type);
    }

    [Fact]
    public async Task Go_EmptyName_UsesConfiguredDefaultExport()
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);

        var replies = await server.Client.OptionAsync(NbdOptionType.Go, NbdTestClient.InfoData(string.Empty, NbdInfoType.Name));

        Assert.Equal(NbdOptionReplyType.Ack, replies[^1].Type);
        var name = replies.Single(r => r.Type == NbdOptionReplyType.Info && r.Data[1] == (byte)NbdInfoType.Name);
        Assert.Equal("vol", Encoding.UTF8.GetString(name.Data, 2, name.Data.Length - 2));
        Assert.Same(server.Catalog.List()[0], server.Connection.Export);
    }

    [Fact]
    public async Task Go_ReadOnlyExport_AdvertisesReadOnlyWithoutWriteFeatures()
    {
        await using var server = NbdServerHarness.Start(readOnlyExport: true);
        await StartOptionsAsync(server);

        var replies = await server.Client.OptionAsync(NbdOptionType.Go, NbdTestClient.InfoData("vol"));

        var flags = NbdTestClient.ParseInfoExport(replies[0]).Flags;
        Assert.True(flags.HasFlag(NbdTransmissionFlags.ReadOnly | NbdTransmissionFlags.HasFlags));
        Assert.False(flags.HasFlag(NbdTransmissionFlags.SendTrim));
        Assert.False(flags.HasFlag(NbdTransmissionFlags.SendWriteZeroes));
        Assert.Equal(flags, server.Connection.TransmissionFlags);
    }

    [Fact]
    public async Task Go_AfterStructuredReply_AdvertisesDontFragment()
    {
        await using var server = NbdServerHarness.Start();
        var info = await server.Client.HandshakeAsync("vol", structured: true);

        Assert.True(info.Flags.HasFlag(NbdTransmissionFlags.SendDf));
    }

    [Fact]
    public async Task StructuredReply_WithData_RepliesInvalid()
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);

        var reply = (await server.Client.OptionAsync(NbdOptionType.StructuredReply, "x"u8)).Single();

        Assert.Equal(NbdOptionReplyType.ErrorInvalid, reply.Type);
    }

    [Fact]
    public async Task SetMetaContext_WithoutStructuredReplies_RepliesInvalid()
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);

        var reply = (await server.Client.OptionAsync(NbdOptionType.SetMetaContext, NbdTestClient.MetaContextData("vol", "base:allocation"))).Single();

        Assert.Equal(NbdOptionReplyType.ErrorInvalid, reply.Type);
    }

    [Theory]
    [InlineData("")]
    [InlineData("base:")]
    [InlineData("base:allocation")]
    [InlineData("qemu:dirty-bitmap:x,base:allocation")]
    public async Task ListMetaContext_MatchingQueries_ListsBaseAllocationWithIdZero(string queryList)
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);
        await server.Client.OptionAsync(NbdOptionType.StructuredReply);

        var replies = await server.Client.OptionAsync(NbdOptionType.ListMetaContext, NbdTestClient.MetaContextData("vol", queryList.Split(',', StringSplitOptions.RemoveEmptyEntries)));

        Assert.Equal(2, replies.Count);
        Assert.Equal(NbdOptionReplyType.MetaContext, replies[0].Type);
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(replies[0].Data));
        Assert.Equal("base:allocation", Encoding.UTF8.GetString(replies[0].Data, 4, replies[0].Data.Length - 4));
        Assert.Equal(NbdOptionReplyType.Ack, replies[1].Type);
    }

    [Theory]
    [InlineData("")]
    [InlineData("base:")]
    [InlineData("x-unknown:thing")]
    [InlineData("base:nothing")]
    public async Task SetMetaContext_NoKnownContext_SelectsNothing(string queryList)
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);
        await server.Client.OptionAsync(NbdOptionType.StructuredReply);

        var replies = await server.Client.OptionAsync(NbdOptionType.SetMetaContext, NbdTestClient.MetaContextData("vol", queryList.Split(',', StringSplitOptions.RemoveEmptyEntries)));

        Assert.Equal(NbdOptionReplyType.Ack, replies.Single().Type);
    }

    [Fact]
    public async Task SetMetaContext_BaseAllocation_SelectsContextWithNonZeroId()
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);
        await server.Client.OptionAsync(NbdOptionType.StructuredReply);

        var replies = await server.Client.OptionAsync(NbdOptionType.SetMetaContext, NbdTestClient.MetaContextData("vol", "base:allocation"));

        Assert.Equal(NbdOptionReplyType.MetaContext, replies[0].Type);
        Assert.NotEqual(0u, BinaryPrimitives.ReadUInt32BigEndian(replies[0].Data));
        Assert.Equal(NbdOptionReplyType.Ack, replies[1].Type);
    }

    [Fact]
    public async Task SetMetaContext_UnknownExport_RepliesUnknown()
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);
        await server.Client.OptionAsync(NbdOptionType.StructuredReply);

        var reply = (await server.Client.OptionAsync(NbdOptionType.SetMetaContext, NbdTestClient.MetaContextData("other", "base:allocation"))).Single();

        Assert.Equal(NbdOptionReplyType.ErrorUnknown, reply.Type);
    }

    [Theory]
    [InlineData(new byte[] { 0, 0, 0, 3, (byte)'v', (byte)'o', (byte)'l', 0, 0, 0, 1, 0, 0, 0, 99, (byte)'b' })]
    [InlineData(new byte[] { 0, 0, 0, 3, (byte)'v', (byte)'o', (byte)'l', 0, 0, 0, 0, 1 })]
    [InlineData(new byte[] { 0, 0, 0, 200, (byte)'v' })]
    [InlineData(new byte[] { 0, 0, 0, 3, (byte)'v', (byte)'o', (byte)'l' })]
    public async Task MetaContext_MalformedData_RepliesInvalid(byte[] data)
    {
        await using var server = NbdServerHarness.Start();
        await StartOptionsAsync(server);
        await server.Client.OptionAsync(NbdOptionType.StructuredReply);

        var reply = (await server.Client.OptionAsync(NbdOptionType.ListMetaContext, data)).Single();

        Assert.Equal(NbdOptionReplyType.ErrorInvalid, reply.Type);
    }

    [Fact]
    public async Task MetaContext_TooManyQueries_RepliesTooBig()
    {
        await using var server = NbdServerHarness.Start(options: new NbdServerOptions { MaxMetaContextQueries = 2 });
        await StartOptionsAsync(server);
        await server.Client.OptionAsync(NbdOptionType.StructuredReply);

        var reply = (await server.Client.OptionAsync(NbdOptionType.SetMetaContext, NbdTestClient.MetaContextData("vol", "a:", "b:", "c:"))).Single();

        Assert.Equal(NbdOptionReplyType.ErrorTooBig, reply.Type);
    }

    private static async Task StartOptionsAsync(NbdServerHarness server)
    {
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes);
    }
}
