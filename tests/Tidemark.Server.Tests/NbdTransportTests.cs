using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Protocols.Nbd;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>
/// NBD on the server's own transport, in process: WRITE payloads come through the transport's payload
/// feature; large WRITEs of whole pages are pulled by the device on the connection's thread (the payload
/// source), other large ones go to the connection's write worker (NbdConnection.Writes.cs), small ones
/// run on the connection's thread unless the worker still holds earlier writes (order is kept).
/// </summary>
public sealed class NbdTransportTests : IAsyncLifetime
{
    private const int DeviceBytes = 16 << 20;
    private readonly RecordingDevice _device = new(DeviceBytes);
    private NbdListener? _listener;

    public async Task InitializeAsync()
    {
        var catalog = new NbdExportCatalog { DefaultExportName = "vol" };
        catalog.Set(new NbdExport("vol", _device, "test", false));
        _listener = new NbdListener(new IPEndPoint(IPAddress.Loopback, 0), null, catalog, NbdServerOptions.Default, NullLogger<NbdListener>.Instance);
        await _listener.StartAsync(CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _listener!.DisposeAsync();
    }

    [Fact]
    public async Task BurstOfSmallWrites_RunsOnTheConnectionsThread_EveryOneAnsweredAndOnTheDevice()
    {
        using var socket = await ConnectAsync();
        using var stream = new NetworkStream(socket);
        await DataPhaseTests.HandshakeAsync(stream, "vol");

        // 40 writes of 4 KiB in one send: the receive buffer holds the next while each is taken.
        var expected = new byte[40 * 4096];
        new Random(7).NextBytes(expected);
        var burst = new MemoryStream();
        for (var i = 0; i < 40; i++)
        {
            burst.Write(Request(1, (ulong)i, (ulong)i * 4096, 4096));
            burst.Write(expected, i * 4096, 4096);
        }

        await stream.WriteAsync(burst.ToArray());
        var cookies = new HashSet<ulong>();
        for (var i = 0; i < 40; i++)
        {
            var (error, cookie) = await ReadReplyAsync(stream);
            Assert.Equal(0u, error);
            Assert.True(cookies.Add(cookie), $"cookie {cookie} answered twice");
        }

        // A hand-off per 4 KiB write cost a third of QD32 write speed (docs/BENCHMARKS.md, NBD run 8).
        Assert.DoesNotContain("NBD writes", _device.WriterThreads);
        var onDevice = new byte[expected.Length];
        _device.Read(0, onDevice);
        Assert.Equal(expected, onDevice);
    }

    [Fact]
    public async Task LoneWrite_RunsOnTheConnectionsThread()
    {
        using var socket = await ConnectAsync();
        using var stream = new NetworkStream(socket);
        await DataPhaseTests.HandshakeAsync(stream, "vol");
        for (var i = 0; i < 3; i++)
        {
            await stream.WriteAsync(Request(1, (ulong)i, 0, 4096));
            await stream.WriteAsync(new byte[4096]);
            Assert.Equal((0u, (ulong)i), await ReadReplyAsync(stream));
        }

        Assert.DoesNotContain("NBD writes", _device.WriterThreads);
        Assert.Equal(3, _device.WriterThreads.Count);
    }

    [Fact]
    public async Task LoneLargeWrite_OfWholePages_IsPulledByTheDevice_OnTheConnectionsThread()
    {
        // 256 KiB of whole pages on plain TCP: the device takes it from the transport's payload
        // source (IBlockDevice.WriteFrom; this device's default fills a buffer and writes it), on
        // the connection's thread, since the source reads the socket.
        using var socket = await ConnectAsync();
        using var stream = new NetworkStream(socket);
        await DataPhaseTests.HandshakeAsync(stream, "vol");
        await stream.WriteAsync(Request(1, 1, 0, 256 << 10));
        await stream.WriteAsync(new byte[256 << 10]);
        Assert.Equal((0u, 1ul), await ReadReplyAsync(stream));

        Assert.Single(_device.WriterThreads);
        Assert.DoesNotContain("NBD writes", _device.WriterThreads);
    }

    [Fact]
    public async Task LoneLargeWrite_NotWholePages_GoesToTheWriteWorker()
    {
        // 256 KiB + 512 bytes is past the 128 KiB from which a WRITE is handed to the worker even
        // when nothing else waits, and not whole pages, so it takes the memory path.
        using var socket = await ConnectAsync();
        using var stream = new NetworkStream(socket);
        await DataPhaseTests.HandshakeAsync(stream, "vol");
        await stream.WriteAsync(Request(1, 1, 0, (256 << 10) + 512));
        await stream.WriteAsync(new byte[(256 << 10) + 512]);
        Assert.Equal((0u, 1ul), await ReadReplyAsync(stream));

        Assert.Equal(["NBD writes"], _device.WriterThreads);
    }

    [Fact]
    public async Task SmallWritesBehindALargeOne_QueueBehindTheWorker_InArrivalOrder()
    {
        // 256 KiB + 512 bytes to the worker (not whole pages: no payload source), then 4 KiB writes
        // over its last whole page in the same send: while the worker holds the output they must
        // queue behind it, or the large one would land last.
        using var socket = await ConnectAsync();
        using var stream = new NetworkStream(socket);
        await DataPhaseTests.HandshakeAsync(stream, "vol");
        var batch = new MemoryStream();
        batch.Write(Request(1, 1, 0, (256 << 10) + 512));
        batch.Write(Enumerable.Repeat((byte)1, (256 << 10) + 512).ToArray());
        for (var i = 0; i < 8; i++)
        {
            batch.Write(Request(1, (ulong)(2 + i), (256 << 10) - 4096, 4096));
            batch.Write(Enumerable.Repeat((byte)(2 + i), 4096).ToArray());
        }

        await stream.WriteAsync(batch.ToArray());
        for (var i = 0; i < 9; i++)
        {
            Assert.Equal(0u, (await ReadReplyAsync(stream)).Error);
        }

        var lastPage = new byte[4096];
        _device.Read((256 << 10) - 4096, lastPage);
        Assert.All(lastPage, b => Assert.Equal((byte)9, b));
        Assert.Contains("NBD writes", _device.WriterThreads);
    }

    [Fact]
    public async Task LargeWrite_BeyondTheReceiveBuffer_ThenARead_SeesItWhole()
    {
        // 3 MiB: most of it comes straight from the socket, after what the receive buffer held.
        using var socket = await ConnectAsync();
        using var stream = new NetworkStream(socket);
        await DataPhaseTests.HandshakeAsync(stream, "vol");
        var data = new byte[3 << 20];
        new Random(8).NextBytes(data);
        var batch = new MemoryStream();
        batch.Write(Request(1, 1, 1 << 20, (uint)data.Length));
        batch.Write(data);
        batch.Write(Request(0, 2, 1 << 20, (uint)data.Length));
        await stream.WriteAsync(batch.ToArray());

        Assert.Equal((0u, 1ul), await ReadReplyAsync(stream));
        Assert.Equal((0u, 2ul), await ReadReplyAsync(stream));
        var read = new byte[data.Length];
        await stream.ReadExactlyAsync(read);
        Assert.Equal(data, read);
    }

    private async Task<Socket> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(_listener!.LocalEndpoint!);
        return socket;
    }

    /// <summary>proto.md request: magic, flags, type, cookie, offset, length (READ 0, WRITE 1; flag FUA 1).</summary>
    internal static byte[] Request(ushort type, ulong cookie, ulong offset, uint length, ushort flags = 0)
    {
        var request = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(request, 0x25609513);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), length);
        return request;
    }

    /// <summary>A simple reply: magic, error, cookie.</summary>
    internal static async Task<(uint Error, ulong Cookie)> ReadReplyAsync(Stream stream)
    {
        var reply = new byte[16];
        await stream.ReadExactlyAsync(reply);
        Assert.Equal(0x67446698u, BinaryPrimitives.ReadUInt32BigEndian(reply));
        return (BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)));
    }

    /// <summary>A memory device that records which thread ran each write.</summary>
    private sealed class RecordingDevice(long sizeBytes) : ForwardingDevice(new MemoryBlockDevice(sizeBytes))
    {
        public ConcurrentBag<string> WriterThreads { get; } = [];

        public override void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
        {
            WriterThreads.Add(Thread.CurrentThread.Name ?? "");
            base.Write(offsetBytes, source, forceUnitAccess);
        }
    }
}
