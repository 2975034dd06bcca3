using System.Buffers.Binary;
using System.Text;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

public sealed class StructuredReplyTests
{
    [Fact]
    public async Task Read_Structured_SendsOneOffsetDataChunkWithDone()
    {
        await using var server = NbdServerHarness.Start();
        var data = TransmissionTests.Pattern(4096, 1);
        server.Device.Write(8192, data, false);
        await server.Client.HandshakeAsync("vol", structured: true);

        await server.Client.SendRequestAsync(NbdCommand.Read, 77, 8192, 4096, NbdCommandFlags.DontFragment);
        var chunk = await server.Client.ReadChunkAsync();

        Assert.Equal(new NbdStructuredReplyHeader(NbdReplyFlags.Done, NbdReplyType.OffsetData, 77, 8 + 4096), chunk.Header);
        Assert.Equal(8192ul, BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload));
        Assert.Equal(data, chunk.Payload[8..]);
    }

    [Fact]
    public async Task Read_StructuredStorageError_SendsErrorChunkWithMessage()
    {
        var device = new FaultyBlockDevice(1024 * 1024);
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol", structured: true);
        device.Fault = StorageError.Corrupt;

        await server.Client.SendRequestAsync(NbdCommand.Read, 5, 0, 4096);
        var chunk = await server.Client.ReadChunkAsync();

        Assert.Equal(NbdReplyFlags.Done, chunk.Header.Flags);
        Assert.Equal(NbdReplyType.Error, chunk.Header.Type);
        Assert.Equal(5ul, chunk.Header.Cookie);
        Assert.Equal(NbdError.IoError, (NbdError)BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload));
        var messageLength = BinaryPrimitives.ReadUInt16BigEndian(chunk.Payload.AsSpan(4));
        Assert.Equal(chunk.Payload.Length - 6, messageLength);
        Assert.Contains("Corrupt", Encoding.UTF8.GetString(chunk.Payload, 6, messageLength), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Read_StructuredBeyondEnd_SendsErrorChunkNotSimpleReply()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol", structured: true);

        await server.Client.SendRequestAsync(NbdCommand.Read, 5, 1024 * 1024, 512);
        var chunk = await server.Client.ReadChunkAsync();

        Assert.Equal(NbdReplyType.Error, chunk.Header.Type);
        Assert.Equal(NbdError.InvalidArgument, (NbdError)BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload));
    }

    [Fact]
    public async Task Read_StructuredZeroLength_SendsNoneChunk()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol", structured: true);

        await server.Client.SendRequestAsync(NbdCommand.Read, 6, 0, 0);

        Assert.Equal(new NbdStructuredReplyHeader(NbdReplyFlags.Done, NbdReplyType.None, 6, 0), (await server.Client.ReadChunkAsync()).Header);
    }

    [Fact]
    public async Task Write_Structured_SucceedsWithSimpleReply()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol", structured: true);

        await server.Client.SendRequestAsync(NbdCommand.Write, 8, 0, 512, payload: new byte[512]);

        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 8), await server.Client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task BlockStatus_SparseDevice_ReportsDataAndHolesFromOffset()
    {
        await using var server = NbdServerHarness.Start(new MemoryBlockDevice(1024 * 1024));
        server.Device.Write(0, TransmissionTests.Pattern(8192, 1), false);
        server.Device.Write(65536, TransmissionTests.Pattern(4096, 2), false);
        await server.Client.HandshakeAsync("vol", structured: true, allocationContext: true);

        await server.Client.SendRequestAsync(NbdCommand.BlockStatus, 9, 0, 1024 * 1024);
        var chunk = await server.Client.ReadChunkAsync();

        Assert.Equal(NbdReplyType.BlockStatus, chunk.Header.Type);
        Assert.Equal(NbdReplyFlags.Done, chunk.Header.Flags);
        Assert.Equal(
            [(8192u, 0u), (57344u, 3u), (4096u, 0u), ((1024u * 1024) - 69632u, 3u)],
            ParseExtents(chunk.Payload, out var contextId));
        Assert.NotEqual(0u, contextId);
    }

    [Fact]
    public async Task BlockStatus_RequestOne_ReturnsOneExtentWithinLength()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol", structured: true, allocationContext: true);

        await server.Client.SendRequestAsync(NbdCommand.BlockStatus, 9, 4096, 10000, NbdCommandFlags.RequestOne);
        var extents = ParseExtents((await server.Client.ReadChunkAsync()).Payload, out _);

        var extent = Assert.Single(extents);
        Assert.InRange(extent.Length, 1u, 10000u);
        Assert.Equal(3u, extent.Flags);
    }

    [Fact]
    public async Task BlockStatus_ManyRuns_CapsExtentsAndMakesProgress()
    {
        await using var server = NbdServerHarness.Start(options: new NbdServerOptions { MaxBlockStatusExtents = 4 });
        for (var unit = 0; unit < 32; unit += 2)
        {
            server.Device.Write(unit * 4096L, new byte[4096], false);
        }

        await server.Client.HandshakeAsync("vol", structured: true, allocationContext: true);

        await server.Client.SendRequestAsync(NbdCommand.BlockStatus, 9, 0, 1024 * 1024);
        var extents = ParseExtents((await server.Client.ReadChunkAsync()).Payload, out _);

        Assert.Equal([(4096u, 0u), (4096u, 3u), (4096u, 0u), (4096u, 3u)], extents);
    }

    [Fact]
    public async Task BlockStatus_WithoutMetaContext_RepliesInvalid()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol", structured: true);

        await server.Client.SendRequestAsync(NbdCommand.BlockStatus, 9, 0, 4096);
        var chunk = await server.Client.ReadChunkAsync();

        Assert.Equal(NbdReplyType.Error, chunk.Header.Type);
        Assert.Equal(NbdError.InvalidArgument, (NbdError)BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload));
    }

    [Fact]
    public async Task BlockStatus_ContextSetForOtherExport_RepliesInvalid()
    {
        var catalog = new NbdExportCatalog();
        catalog.Set(new NbdExport("a", new MemoryBlockDevice(65536)));
        catalog.Set(new NbdExport("b", new MemoryBlockDevice(65536)));
        await using var server = NbdServerHarness.Start(catalog: catalog);
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        await server.Client.OptionAsync(NbdOptionType.StructuredReply);
        await server.Client.OptionAsync(NbdOptionType.SetMetaContext, NbdTestClient.MetaContextData("a", "base:allocation"));
        await server.Client.OptionAsync(NbdOptionType.Go, NbdTestClient.InfoData("b"));

        await server.Client.SendRequestAsync(NbdCommand.BlockStatus, 9, 0, 4096);

        Assert.Equal(NbdReplyType.Error, (await server.Client.ReadChunkAsync()).Header.Type);
    }

    private static List<(uint Length, uint Flags)> ParseExtents(byte[] payload, out uint contextId)
    {
        Assert.Equal(4, payload.Length % 8);
        contextId = BinaryPrimitives.ReadUInt32BigEndian(payload);
        var extents = new List<(uint, uint)>();
        for (var at = 4; at < payload.Length; at += 8)
        {
            extents.Add((BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(at + 4))));
        }

        return extents;
    }
}
