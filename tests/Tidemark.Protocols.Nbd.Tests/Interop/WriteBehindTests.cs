using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Interop;

/// <summary>
/// WRITEs that arrive while more requests wait go to the connection's write worker (over real TCP):
/// every write is answered after the device took it, in the meaning of the inline path.
/// </summary>
public sealed class WriteBehindTests
{
    [Fact]
    public async Task PipelinedLargeWrites_AreAllAnswered_AndAReadAfterThemSeesTheLastWriteOfARange()
    {
        var device = new MemoryBlockDevice(16 << 20);
        await using var host = new TcpNbdHost(Catalog(device));
        await using var client = await ConnectAsync(host);
        await client.HandshakeAsync("vol");

        // Sent in one go without reading a reply; cookie 3 overwrites part of cookie 1's range, and
        // one write carries FUA. Sizes cross the write-behind bounds (128 KiB to 4 MiB) both ways.
        var writes = new (ulong Offset, int Length, NbdCommandFlags Flags)[]
        {
            (0, 1 << 20, NbdCommandFlags.None),
            (1 << 20, 4096, NbdCommandFlags.None),
            (512 << 10, 256 << 10, NbdCommandFlags.None),
            (2 << 20, 3 << 20, NbdCommandFlags.Fua),
            (5 << 20, 128 << 10, NbdCommandFlags.None),
            (6 << 20, 6 << 20, NbdCommandFlags.None),
        };
        var expected = new byte[16 << 20];
        var batch = new List<byte>();
        for (var i = 0; i < writes.Length; i++)
        {
            var (offset, length, flags) = writes[i];
            var payload = Pattern(length, i + 1);
            payload.CopyTo(expected, (int)offset);
            batch.AddRange(NbdTestClient.Request(NbdCommand.Write, (ulong)i + 1, offset, (uint)length, flags, payload));
        }

        batch.AddRange(NbdTestClient.Request(NbdCommand.Read, 100, 0, 2 << 20));
        await client.SendAsync(batch.ToArray());

        var answered = new HashSet<ulong>();
        for (var i = 0; i < writes.Length; i++)
        {
            var reply = await client.ReadSimpleReplyAsync();
            Assert.Equal(NbdError.None, reply.Error);
            Assert.True(answered.Add(reply.Cookie), $"cookie {reply.Cookie} answered twice");
        }

        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 100), await client.ReadSimpleReplyAsync());
        Assert.Equal(expected.AsSpan(0, 2 << 20).ToArray(), await client.ReadExactAsync(2 << 20));
        Assert.Equal(Enumerable.Range(1, writes.Length).Select(i => (ulong)i).ToHashSet(), answered);
        var onDevice = new byte[expected.Length];
        device.Read(0, onDevice);
        Assert.Equal(expected, onDevice);
    }

    [Fact]
    public async Task OneLargeWrite_ClientWaitingForItsReply_GetsIt()
    {
        // The connection must not wait for the next request while a write is unanswered.
        var device = new MemoryBlockDevice(4 << 20);
        await using var host = new TcpNbdHost(Catalog(device));
        await using var client = await ConnectAsync(host);
        await client.HandshakeAsync("vol");
        for (var i = 0; i < 3; i++)
        {
            await client.SendRequestAsync(NbdCommand.Write, (ulong)i, (ulong)i << 20, 1 << 20, payload: Pattern(1 << 20, i));
            Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, (ulong)i), await client.ReadSimpleReplyAsync());
        }
    }

    [Fact]
    public async Task DeviceError_OnAWriteBehind_IsThatWritesErrorReply_AndTheSessionGoesOn()
    {
        var device = new FaultyBlockDevice(4 << 20) { Fault = StorageError.NoSpace };
        await using var host = new TcpNbdHost(Catalog(device));
        await using var client = await ConnectAsync(host);
        await client.HandshakeAsync("vol");

        await client.SendRequestAsync(NbdCommand.Write, 1, 0, 1 << 20, payload: Pattern(1 << 20, 1));
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.NoSpace, 1), await client.ReadSimpleReplyAsync());

        device.Fault = null;
        var data = Pattern(512 << 10, 2);
        await client.SendRequestAsync(NbdCommand.Write, 2, 1 << 20, 512 << 10, payload: data);
        await client.SendRequestAsync(NbdCommand.Read, 3, 1 << 20, 512 << 10);
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 2), await client.ReadSimpleReplyAsync());
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 3), await client.ReadSimpleReplyAsync());
        Assert.Equal(data, await client.ReadExactAsync(512 << 10));
        Assert.Equal(2, device.WriterThreads.Count);
    }

    [Fact]
    public async Task Disconnect_RightAfterLargeWrites_AnswersThemFirst_AndTheDataIsOnTheDevice()
    {
        var device = new MemoryBlockDevice(8 << 20);
        await using var host = new TcpNbdHost(Catalog(device));
        await using var client = await ConnectAsync(host);
        await client.HandshakeAsync("vol");
        var batch = new List<byte>();
        for (var i = 0; i < 4; i++)
        {
            batch.AddRange(NbdTestClient.Request(NbdCommand.Write, (ulong)i, (ulong)i << 21, 2 << 20, payload: Pattern(2 << 20, 10 + i)));
        }

        batch.AddRange(NbdTestClient.Request(NbdCommand.Disconnect, 9, 0, 0));
        await client.SendAsync(batch.ToArray());
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(NbdError.None, (await client.ReadSimpleReplyAsync()).Error);
        }

        Assert.Empty(await client.ReadToEndAsync());
        for (var i = 0; i < 4; i++)
        {
            var onDevice = new byte[2 << 20];
            device.Read((long)i << 21, onDevice);
            Assert.Equal(Pattern(2 << 20, 10 + i), onDevice);
        }
    }

    private static NbdExportCatalog Catalog(IBlockDevice device)
    {
        var catalog = new NbdExportCatalog { DefaultExportName = "vol" };
        catalog.Set(new NbdExport("vol", device, "test", false));
        return catalog;
    }

    private static async Task<TcpClientSession> ConnectAsync(TcpNbdHost host)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, host.Port);
        return new TcpClientSession(socket);
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>The test client over a real TCP socket.</summary>
    private sealed class TcpClientSession : IAsyncDisposable
    {
        private readonly NetworkStream _stream;
        private readonly NbdTestClient _client;

        public TcpClientSession(Socket socket)
        {
            _stream = new NetworkStream(socket, ownsSocket: true);
            _client = new NbdTestClient(new DuplexPipe(
                PipeReader.Create(_stream, new StreamPipeReaderOptions(leaveOpen: true)),
                PipeWriter.Create(_stream, new StreamPipeWriterOptions(leaveOpen: true))));
        }

        public Task HandshakeAsync(string name) => _client.HandshakeAsync(name);

        public Task SendAsync(byte[] bytes) => _client.SendAsync(bytes);

        public Task SendRequestAsync(NbdCommand command, ulong cookie, ulong offset, uint length, NbdCommandFlags flags = NbdCommandFlags.None, byte[]? payload = null) =>
            _client.SendRequestAsync(command, cookie, offset, length, flags, payload);

        public Task<NbdSimpleReplyHeader> ReadSimpleReplyAsync() => _client.ReadSimpleReplyAsync();

        public Task<byte[]> ReadExactAsync(int length) => _client.ReadExactAsync(length);

        public Task<byte[]> ReadToEndAsync() => _client.ReadToEndAsync();

        public async ValueTask DisposeAsync()
        {
            await _client.CompleteAsync();
            await _stream.DisposeAsync();
        }

    }
}
