using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// A connection that finished its handshake gets a thread of its own (and only then), and
/// --idle-timeout closes one that then sends nothing (issue 17; docs/adr/0006-connection-limits.md).
/// </summary>
public sealed class DataPhaseTests
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
        var (greeting, export) = await HandshakeAsync(stream, "mail");

        // In transmission now; send nothing and wait for the server to close.
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var read = await stream.ReadAsync(new byte[16], wait.Token);

        Assert.Equal("NBDMAGIC", Encoding.ASCII.GetString(greeting, 0, 8));
        Assert.Equal(8 << 20, BinaryPrimitives.ReadInt64BigEndian(export));
        Assert.Equal(0, read);
    }

    [Fact]
    public async Task NbdClientInTransmission_IsServedOnAThreadOfItsOwn()
    {
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"));
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 8 << 20));
        await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPEndPoint.Parse(server.Nbd));
        var local = (IPEndPoint)socket.LocalEndPoint!;
        using var stream = new NetworkStream(socket);
        var negotiating = ThreadNames(server.Pid);
        await HandshakeAsync(stream, "mail");

        // The thread is named after the client's address (Linux keeps 15 bytes of it).
        var name = $"NBD {local}"[..15];
        string[] serving = [];
        for (var i = 0; i < 100 && !serving.Contains(name); i++)
        {
            await Task.Delay(50);
            serving = ThreadNames(server.Pid);
        }

        Assert.DoesNotContain(name, negotiating);
        Assert.Contains(name, serving);
    }

    /// <summary>proto.md, fixed newstyle: greeting, client flags (FIXED_NEWSTYLE | NO_ZEROES), NBD_OPT_EXPORT_NAME; returns the greeting and the export's size and flags.</summary>
    internal static async Task<(byte[] Greeting, byte[] Export)> HandshakeAsync(Stream stream, string export)
    {
        var greeting = new byte[18];
        await stream.ReadExactlyAsync(greeting);
        var name = Encoding.UTF8.GetBytes(export);
        var request = new byte[4 + 8 + 4 + 4 + name.Length];
        BinaryPrimitives.WriteUInt32BigEndian(request, 3);
        "IHAVEOPT"u8.CopyTo(request.AsSpan(4));
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(12), 1);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(16), (uint)name.Length);
        name.CopyTo(request.AsSpan(20));
        await stream.WriteAsync(request);
        var reply = new byte[10];
        await stream.ReadExactlyAsync(reply);
        return (greeting, reply);
    }

    private static string[] ThreadNames(int pid) =>
        [.. Directory.GetDirectories($"/proc/{pid}/task").Select(task => File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n'))];
}
