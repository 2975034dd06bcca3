using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// --idle-timeout closes a connection in its data phase that sends nothing (issue 17); the
/// handshake and the data phase it reached are the real ones.
/// </summary>
public sealed class IdleTimeoutTests
{
    [Fact]
    public async Task NbdClientInTransmission_SendingNothing_IsClosedAfterTheIdleTimeout()
    {
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"), "--idle-timeout", "1s");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 8 << 20));
        await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPEndPoint.Parse(server.Nbd));
        using var stream = new NetworkStream(socket);

        // proto.md, fixed newstyle: greeting, client flags (FIXED_NEWSTYLE | NO_ZEROES), NBD_OPT_EXPORT_NAME.
        var greeting = new byte[18];
        await stream.ReadExactlyAsync(greeting);
        var request = new byte[4 + 8 + 4 + 4 + 4];
        BinaryPrimitives.WriteUInt32BigEndian(request, 3);
        "IHAVEOPT"u8.CopyTo(request.AsSpan(4));
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(12), 1);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(16), 4);
        "mail"u8.CopyTo(request.AsSpan(20));
        await stream.WriteAsync(request);
        var export = new byte[10];
        await stream.ReadExactlyAsync(export);

        // In transmission now; send nothing and wait for the server to close.
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var read = await stream.ReadAsync(new byte[16], wait.Token);

        Assert.Equal("NBDMAGIC", Encoding.ASCII.GetString(greeting, 0, 8));
        Assert.Equal(8 << 20, BinaryPrimitives.ReadInt64BigEndian(export));
        Assert.Equal(0, read);
    }
}
