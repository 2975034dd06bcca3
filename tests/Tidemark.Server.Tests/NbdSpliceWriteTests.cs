using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Protocols.Nbd;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Large NBD WRITEs on the server's own transport go to the device as payload sources
/// (IBlockDevice.WriteFrom): an engine volume's file store takes them from the socket with splice,
/// on the connection's thread; a device that fails part-way answers the error and the connection
/// stays in step; a peer that stops in the middle of a payload meets the payload deadline.
/// </summary>
public sealed class NbdSpliceWriteTests : IAsyncLifetime
{
    private const int Mib = 1 << 20;
    private const ushort Fua = 1; // NBD_CMD_FLAG_FUA
    private readonly PulledVolume _volume = new("tidemark-splice-", 4096);
    private NbdListener? _listener;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_listener is not null)
        {
            await _listener.DisposeAsync();
        }

        _volume.Dispose();
    }

    [Fact]
    public async Task LargeWrites_ArePulledByTheVolume_OnTheConnectionsThread_WithFua_AndReadBackIdentically()
    {
        await StartAsync(new ConnectionLimits());
        using var socket = await ConnectAsync();
        using var stream = new NetworkStream(socket);
        await DataPhaseTests.HandshakeAsync(stream, "vol");
        var first = PulledVolume.Pattern(Mib, 1);
        var second = PulledVolume.Pattern(3 * Mib, 2);
        var batch = new MemoryStream();
        batch.Write(Request(1, Fua, 1, 0, first.Length));
        batch.Write(first);
        batch.Write(Request(1, 0, 2, Mib, second.Length));
        batch.Write(second);
        batch.Write(Request(0, 0, 3, 0, 4 * Mib));
        await stream.WriteAsync(batch.ToArray());

        Assert.Equal((0u, 1ul), await ReadReplyAsync(stream));
        Assert.Equal((0u, 2ul), await ReadReplyAsync(stream));
        Assert.Equal((0u, 3ul), await ReadReplyAsync(stream));
        var read = new byte[4 * Mib];
        await stream.ReadExactlyAsync(read);
        Assert.Equal(first.Concat(second).ToArray(), read);

        // A 1 MiB WRITE with FUA is one durable pull; 3 MiB are pulled a pipe's worth at a time
        // (FUA on none: the WRITE's flush would follow its last piece), all on the connection thread.
        var pulls = _volume.Device.Pulls.ToArray();
        Assert.Equal((Mib, true), (pulls[0].Length, pulls[0].Fua));
        Assert.Equal(3 * Mib, pulls.Skip(1).Sum(p => p.Length));
        Assert.All(pulls.Skip(1), p => Assert.False(p.Fua));
        Assert.All(pulls, p => Assert.NotEqual("NBD writes", p.Thread));
        Assert.DoesNotContain("NBD writes", _volume.Device.WriterThreads);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(Mib)]
    public async Task AWriteWhoseDeviceFailsPartWay_IsAnsweredWithEio_AndTheConnectionStaysInStep(long failAt)
    {
        await StartAsync(new ConnectionLimits());
        _volume.Device.FailAtOffset = failAt;
        using var socket = await ConnectAsync();
        using var stream = new NetworkStream(socket);
        await DataPhaseTests.HandshakeAsync(stream, "vol");
        var after = PulledVolume.Pattern(256 << 10, 3);
        var batch = new MemoryStream();
        batch.Write(Request(1, Fua, 1, 0, 3 * Mib));
        batch.Write(PulledVolume.Pattern(3 * Mib, 4));
        batch.Write(Request(1, 0, 2, 8 * Mib, after.Length));
        batch.Write(after);
        batch.Write(Request(0, 0, 3, 8 * Mib, after.Length));
        await stream.WriteAsync(batch.ToArray());

        Assert.Equal((5u, 1ul), await ReadReplyAsync(stream)); // NBD_EIO
        Assert.Equal((0u, 2ul), await ReadReplyAsync(stream));
        Assert.Equal((0u, 3ul), await ReadReplyAsync(stream));
        var read = new byte[after.Length];
        await stream.ReadExactlyAsync(read);
        Assert.Equal(after, read);
    }

    [Fact]
    public async Task APeerThatStopsInTheMiddleOfAPayload_IsClosedAtThePayloadDeadline_AndAnotherClientWritesTheRange()
    {
        await StartAsync(new ConnectionLimits { PayloadTimeout = TimeSpan.FromMilliseconds(500) });
        using var stuck = await ConnectAsync();
        using var stuckStream = new NetworkStream(stuck);
        await DataPhaseTests.HandshakeAsync(stuckStream, "vol");
        await stuckStream.WriteAsync(Request(1, 0, 1, 0, 512 << 10));
        await stuckStream.WriteAsync(PulledVolume.Pattern(100 << 10, 5));

        using var other = await ConnectAsync();
        using var otherStream = new NetworkStream(other);
        await DataPhaseTests.HandshakeAsync(otherStream, "vol");
        var data = PulledVolume.Pattern(256 << 10, 6);
        await otherStream.WriteAsync(Request(1, 0, 7, 0, data.Length));
        await otherStream.WriteAsync(data);
        Assert.Equal((0u, 7ul), await ReadReplyAsync(otherStream).WaitAsync(TimeSpan.FromSeconds(10)));

        // The stuck connection is closed by the server: its read ends (0 bytes or a reset).
        var buffer = new byte[16];
        var closed = await ReadOrResetAsync(stuckStream, buffer).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, closed);
    }

    private static async Task<int> ReadOrResetAsync(Stream stream, byte[] buffer)
    {
        try
        {
            return await stream.ReadAsync(buffer);
        }
        catch (IOException)
        {
            return 0;
        }
    }

    private async Task StartAsync(ConnectionLimits limits)
    {
        var catalog = new NbdExportCatalog { DefaultExportName = "vol" };
        catalog.Set(new NbdExport("vol", _volume.Device, "test", false));
        _listener = new NbdListener(new IPEndPoint(IPAddress.Loopback, 0), null, catalog, NbdServerOptions.Default, NullLogger<NbdListener>.Instance, limits);
        await _listener.StartAsync(CancellationToken.None);
    }

    private async Task<Socket> ConnectAsync()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(_listener!.LocalEndpoint!);
        return socket;
    }

    /// <summary>An NBD request (NbdTransportTests.Request) with its flags first, as these tests read best.</summary>
    private static byte[] Request(ushort type, ushort flags, ulong cookie, long offset, int length) =>
        NbdTransportTests.Request(type, cookie, (ulong)offset, (uint)length, flags);

    private static Task<(uint Error, ulong Cookie)> ReadReplyAsync(Stream stream) => NbdTransportTests.ReadReplyAsync(stream);
}
