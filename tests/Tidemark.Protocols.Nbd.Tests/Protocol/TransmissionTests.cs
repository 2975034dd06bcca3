using System.IO.Pipelines;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

/// <summary>Commands with simple replies (no structured replies negotiated).</summary>
public sealed class TransmissionTests
{
    [Fact]
    public async Task Write_ThenRead_ReturnsSameData()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");
        var data = Pattern(8192, 3);

        await server.Client.SendRequestAsync(NbdCommand.Write, 1, 4096, 8192, payload: data);
        var write = await server.Client.ReadSimpleReplyAsync();
        await server.Client.SendRequestAsync(NbdCommand.Read, 2, 4096, 8192);
        var read = await server.Client.ReadSimpleReplyAsync();
        var readData = await server.Client.ReadExactAsync(8192);

        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 1), write);
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 2), read);
        Assert.Equal(data, readData);
        var onDevice = new byte[8192];
        server.Device.Read(4096, onDevice);
        Assert.Equal(data, onDevice);
    }

    [Fact]
    public async Task Write_WithFua_Succeeds()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Write, 5, 0, 512, NbdCommandFlags.Fua, Pattern(512, 1));

        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
    }

    [Fact]
    public async Task Requests_PipelinedInOneBuffer_RepliesInOrderInOneFlush()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");
        var flushesBefore = server.ServerOutput.Flushes;
        var batch = new List<byte>();
        for (var i = 0; i < 16; i++)
        {
            batch.AddRange(NbdTestClient.Request(NbdCommand.Write, (ulong)i, (ulong)i * 4096, 4096, payload: Pattern(4096, i)));
        }

        batch.AddRange(NbdTestClient.Request(NbdCommand.Flush, 100, 0, 0));
        await server.Client.SendAsync(batch.ToArray());

        for (var i = 0; i < 16; i++)
        {
            Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, (ulong)i), await server.Client.ReadSimpleReplyAsync());
        }

        Assert.Equal(100ul, (await server.Client.ReadSimpleReplyAsync()).Cookie);
        Assert.Equal(flushesBefore + 1, server.ServerOutput.Flushes);
        Assert.Equal(1, server.Memory.FlushCount);
    }

    [Fact]
    public async Task Write_LargerThanPipeThreshold_StreamsPayloadWithoutStalling()
    {
        // A 64 KiB pause threshold as on a real transport: the 4 MiB payload must be consumed as it arrives.
        var small = new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024, useSynchronizationContext: false);
        await using var server = NbdServerHarness.Start(new MemoryBlockDevice(8 * 1024 * 1024), clientToServer: small);
        await server.Client.HandshakeAsync("vol");
        var data = Pattern(4 * 1024 * 1024, 9);

        await server.Client.SendRequestAsync(NbdCommand.Write, 1, 0, (uint)data.Length, payload: data);

        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
        var onDevice = new byte[data.Length];
        server.Device.Read(0, onDevice);
        Assert.Equal(data, onDevice);
    }

    [Fact]
    public async Task Write_SplitAcrossSends_IsReassembled()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");
        var request = NbdTestClient.Request(NbdCommand.Write, 3, 0, 4096, payload: Pattern(4096, 4));

        foreach (var chunk in request.Chunk(1000))
        {
            await server.Client.SendAsync(chunk);
        }

        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 3), await server.Client.ReadSimpleReplyAsync());
    }

    [Theory]
    [InlineData(4 << 20)] // one piece: the device write carries FUA
    [InlineData(64 << 10)] // 17 pieces written without FUA, then one flush
    public async Task Write_SentInOddPieces_LandsWhole_AndFuaIsOneFuaWriteOrOneFlush(int pieceBytes)
    {
        await using var server = NbdServerHarness.Start(new MemoryBlockDevice(4 * 1024 * 1024), new NbdServerOptions { WriteChunkBytes = pieceBytes });
        await server.Client.HandshakeAsync("vol");
        var data = Pattern(1024 * 1024 + 4096, 11);
        var request = NbdTestClient.Request(NbdCommand.Write, 7, 512 * 1024, (uint)data.Length, NbdCommandFlags.Fua, data);

        foreach (var chunk in request.Chunk(3001))
        {
            await server.Client.SendAsync(chunk);
        }

        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 7), await server.Client.ReadSimpleReplyAsync());
        var onDevice = new byte[data.Length];
        server.Device.Read(512 * 1024, onDevice);
        Assert.Equal(data, onDevice);
        var whole = pieceBytes >= data.Length;
        Assert.Equal(whole ? 0 : 1, server.Memory.FlushCount);
        Assert.Equal(whole ? 1 : 0, server.Memory.FuaWriteCount);
    }

    [Fact]
    public async Task Write_StreamedIntoAFailingDevice_RepliesTheErrorOnceAfterThePayloadAndContinues()
    {
        var device = new FaultyBlockDevice(4 * 1024 * 1024) { Fault = StorageError.NoSpace };
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol");
        var request = NbdTestClient.Request(NbdCommand.Write, 8, 0, 256 * 1024, payload: Pattern(256 * 1024, 12));

        foreach (var chunk in request.Chunk(10_000))
        {
            await server.Client.SendAsync(chunk);
        }

        Assert.Equal(new NbdSimpleReplyHeader(NbdError.NoSpace, 8), await server.Client.ReadSimpleReplyAsync());
        device.Fault = null;
        await server.Client.SendRequestAsync(NbdCommand.Read, 9, 0, 512);
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 9), await server.Client.ReadSimpleReplyAsync());
        await server.Client.ReadExactAsync(512);
    }

    [Theory]
    [InlineData(NbdCommand.Read, 1024 * 1024, 512u, NbdError.InvalidArgument)]
    [InlineData(NbdCommand.Read, ulong.MaxValue - 10, 512u, NbdError.InvalidArgument)]
    [InlineData(NbdCommand.Read, 512, 100u, NbdError.InvalidArgument)]
    [InlineData(NbdCommand.Trim, 1024 * 1024, 4096u, NbdError.InvalidArgument)]
    [InlineData(NbdCommand.WriteZeroes, 1024 * 1024 - 512, 1024u, NbdError.NoSpace)]
    [InlineData(NbdCommand.Cache, 2 * 1024 * 1024, 512u, NbdError.InvalidArgument)]
    [InlineData(NbdCommand.Flush, 512, 0u, NbdError.InvalidArgument)]
    [InlineData(NbdCommand.BlockStatus, 0, 512u, NbdError.InvalidArgument)]
    [InlineData((NbdCommand)42, 0, 0u, NbdError.InvalidArgument)]
    public async Task Command_InvalidRequest_RepliesErrorAndContinues(NbdCommand command, ulong offset, uint length, NbdError expected)
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(command, 11, offset, length);
        var reply = await server.Client.ReadSimpleReplyAsync();
        await server.Client.SendRequestAsync(NbdCommand.Flush, 12, 0, 0);

        Assert.Equal(new NbdSimpleReplyHeader(expected, 11), reply);
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 12), await server.Client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Write_BeyondEnd_RepliesNoSpace()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Write, 1, 1024 * 1024, 512, payload: new byte[512]);

        Assert.Equal(NbdError.NoSpace, (await server.Client.ReadSimpleReplyAsync()).Error);
    }

    [Theory]
    [InlineData(NbdCommand.Read, NbdCommandFlags.NoHole)]
    [InlineData(NbdCommand.Read, NbdCommandFlags.DontFragment)]
    [InlineData(NbdCommand.Flush, NbdCommandFlags.RequestOne)]
    [InlineData(NbdCommand.Cache, NbdCommandFlags.FastZero)]
    [InlineData(NbdCommand.Trim, (NbdCommandFlags)0x100)]
    public async Task Command_UndocumentedFlag_RepliesInvalid(NbdCommand command, NbdCommandFlags flags)
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(command, 1, 0, command == NbdCommand.Flush ? 0u : 512u, flags);

        Assert.Equal(NbdError.InvalidArgument, (await server.Client.ReadSimpleReplyAsync()).Error);
    }

    [Theory]
    [InlineData(NbdCommand.Write)]
    [InlineData(NbdCommand.Trim)]
    [InlineData(NbdCommand.WriteZeroes)]
    public async Task WriteCommand_ReadOnlyExport_RepliesNotPermitted(NbdCommand command)
    {
        await using var server = NbdServerHarness.Start(readOnlyExport: true);
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(command, 1, 0, 512, payload: command == NbdCommand.Write ? new byte[512] : null);

        Assert.Equal(NbdError.NotPermitted, (await server.Client.ReadSimpleReplyAsync()).Error);
    }

    [Theory]
    [InlineData(NbdCommand.Write)]
    [InlineData(NbdCommand.Trim)]
    [InlineData(NbdCommand.WriteZeroes)]
    public async Task WriteCommand_VolumeSoftwareWriteProtectedByIscsi_RepliesNotPermittedUntilCleared(NbdCommand command)
    {
        // An iSCSI initiator's MODE SELECT SWP is kept on the device, which the NBD export shares.
        var device = new MemoryBlockDevice(1024 * 1024);
        device.Write(0, Enumerable.Repeat((byte)0x5A, 512).ToArray(), false);
        device.SoftwareWriteProtected = true;
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(command, 1, 0, 512, payload: command == NbdCommand.Write ? new byte[512] : null);
        Assert.Equal(NbdError.NotPermitted, (await server.Client.ReadSimpleReplyAsync()).Error);
        var stored = new byte[512];
        device.Read(0, stored);
        Assert.All(stored, b => Assert.Equal(0x5A, b));

        device.SoftwareWriteProtected = false;
        await server.Client.SendRequestAsync(command, 2, 0, 512, payload: command == NbdCommand.Write ? new byte[512] : null);
        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
    }

    [Fact]
    public async Task Write_ReadOnlyDevice_AdvertisesReadOnlyAndRepliesNotPermitted()
    {
        await using var server = NbdServerHarness.Start(new MemoryBlockDevice(1024 * 1024, isReadOnly: true));
        var info = await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Write, 1, 0, 512, payload: new byte[512]);

        Assert.True(info.Flags.HasFlag(NbdTransmissionFlags.ReadOnly));
        Assert.Equal(NbdError.NotPermitted, (await server.Client.ReadSimpleReplyAsync()).Error);
    }

    [Fact]
    public async Task Flush_Valid_FlushesDevice()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Flush, 1, 0, 0);

        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
        Assert.Equal(1, server.Memory.FlushCount);
    }

    [Fact]
    public async Task Trim_WholeUnits_LeavesHoleReadingZeros()
    {
        await using var server = NbdServerHarness.Start();
        server.Device.Write(0, Pattern(16384, 5), false);
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Trim, 1, 4096, 8192, NbdCommandFlags.Fua);

        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
        var runs = new AllocationRun[4];
        var count = server.Device.GetAllocationStatus(0, 16384, runs);
        Assert.Equal(
            [new AllocationRun(0, 4096, AllocationState.Allocated), new AllocationRun(4096, 8192, AllocationState.Hole), new AllocationRun(12288, 4096, AllocationState.Allocated)],
            runs[..count]);
        Assert.Equal(1, server.Memory.FlushCount);
    }

    [Fact]
    public async Task Trim_UnalignedEdges_RoundsInwardAndSucceeds()
    {
        await using var server = NbdServerHarness.Start();
        var data = Pattern(4096, 6);
        server.Device.Write(0, data, false);
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Trim, 1, 100, 500);
        await server.Client.SendRequestAsync(NbdCommand.Trim, 2, 100, 1000);

        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
        var onDevice = new byte[4096];
        server.Device.Read(0, onDevice);
        Assert.Equal(data.AsSpan(0, 512).ToArray(), onDevice[..512]);
        Assert.All(onDevice[512..1024], b => Assert.Equal(0, b));
        Assert.Equal(data.AsSpan(1024).ToArray(), onDevice[1024..]);
    }

    [Theory]
    [InlineData(NbdCommandFlags.None)]
    [InlineData(NbdCommandFlags.NoHole)]
    [InlineData(NbdCommandFlags.FastZero)]
    [InlineData(NbdCommandFlags.Fua)]
    public async Task WriteZeroes_Range_ReadsBackZeros(NbdCommandFlags flags)
    {
        await using var server = NbdServerHarness.Start();
        server.Device.Write(0, Pattern(16384, 7), false);
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.WriteZeroes, 1, 2048, 8192, flags);

        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
        var onDevice = new byte[8192];
        server.Device.Read(2048, onDevice);
        Assert.All(onDevice, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task WriteZeroes_FastZeroWithNoHole_RepliesNotSupportedWithoutChanges()
    {
        await using var server = NbdServerHarness.Start();
        var data = Pattern(4096, 8);
        server.Device.Write(0, data, false);
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.WriteZeroes, 1, 0, 4096, NbdCommandFlags.FastZero | NbdCommandFlags.NoHole);

        Assert.Equal(NbdError.NotSupported, (await server.Client.ReadSimpleReplyAsync()).Error);
        var onDevice = new byte[4096];
        server.Device.Read(0, onDevice);
        Assert.Equal(data, onDevice);
    }

    [Fact]
    public async Task Cache_InRange_Succeeds()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Cache, 1, 0, 65536);

        Assert.Equal(NbdError.None, (await server.Client.ReadSimpleReplyAsync()).Error);
    }

    [Fact]
    public async Task Read_ZeroLength_RepliesSuccessWithoutData()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Read, 1, 0, 0);
        await server.Client.SendRequestAsync(NbdCommand.Flush, 2, 0, 0);

        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 1), await server.Client.ReadSimpleReplyAsync());
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 2), await server.Client.ReadSimpleReplyAsync());
    }

    [Fact]
    public async Task Read_LongerThanMaxPayload_RepliesInvalidAndContinues()
    {
        await using var server = NbdServerHarness.Start(new MemoryBlockDevice(64 * 1024), new NbdServerOptions { MaxPayloadBytes = 8192 });
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendRequestAsync(NbdCommand.Read, 1, 0, 16384);

        Assert.Equal(NbdError.InvalidArgument, (await server.Client.ReadSimpleReplyAsync()).Error);
    }

    [Theory]
    [InlineData(StorageError.OutOfRange, NbdError.InvalidArgument)]
    [InlineData(StorageError.InvalidArgument, NbdError.InvalidArgument)]
    [InlineData(StorageError.Misaligned, NbdError.InvalidArgument)]
    [InlineData(StorageError.ReadOnly, NbdError.NotPermitted)]
    [InlineData(StorageError.NoSpace, NbdError.NoSpace)]
    [InlineData(StorageError.IoError, NbdError.IoError)]
    [InlineData(StorageError.Corrupt, NbdError.IoError)]
    [InlineData(StorageError.Closed, NbdError.IoError)]
    public async Task Command_StorageError_MapsToNbdError(StorageError storageError, NbdError expected)
    {
        var device = new FaultyBlockDevice(1024 * 1024);
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol");
        device.Fault = storageError;

        await server.Client.SendRequestAsync(NbdCommand.Read, 1, 0, 4096);
        await server.Client.SendRequestAsync(NbdCommand.Write, 2, 0, 512, payload: new byte[512]);
        await server.Client.SendRequestAsync(NbdCommand.Flush, 3, 0, 0);
        await server.Client.SendRequestAsync(NbdCommand.WriteZeroes, 4, 0, 4096);

        for (ulong cookie = 1; cookie <= 4; cookie++)
        {
            Assert.Equal(new NbdSimpleReplyHeader(expected, cookie), await server.Client.ReadSimpleReplyAsync());
        }

        device.Fault = null;
        await server.Client.SendRequestAsync(NbdCommand.Read, 5, 0, 512);
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 5), await server.Client.ReadSimpleReplyAsync());
        await server.Client.ReadExactAsync(512);
    }

    [Fact]
    public async Task Disconnect_AfterRequests_HandlesThemThenEndsCleanly()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.HandshakeAsync("vol");
        var batch = NbdTestClient.Request(NbdCommand.Write, 1, 0, 512, payload: Pattern(512, 2))
            .Concat(NbdTestClient.Request(NbdCommand.Disconnect, 2, 0, 0))
            .Concat(NbdTestClient.Request(NbdCommand.Flush, 3, 0, 0))
            .ToArray();

        await server.Client.SendAsync(batch);

        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 1), await server.Client.ReadSimpleReplyAsync());
        Assert.Equal(NbdSessionEndReason.ClientDisconnected, (await server.EndAsync()).Reason);
        Assert.Empty(await server.Client.ReadToEndAsync());
        Assert.Equal(0, server.Memory.FlushCount);
    }

    internal static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }
}
