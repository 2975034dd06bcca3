using System.Net;
using System.Net.Sockets;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The experimental `serve --protocol-transport kestrel` (issue 18 §1, docs/adr/0010-protocol-transport.md):
/// the same NBD and iSCSI connections hosted on Kestrel's socket transport serve real clients
/// (qemu-io over NBD and over libiscsi, iscsi-inq).
/// </summary>
public sealed class KestrelTransportTests : IDisposable
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(60);
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    /// <summary>
    /// 3 MiB is past Kestrel's 1 MiB read buffer (the payload is staged while it arrives) and, with
    /// the socket exposed, takes the write-behind path; 4 KiB writes are handled inline.
    /// </summary>
    [Theory]
    [InlineData("kestrel")]
    [InlineData("kestrel-splice")]
    public async Task Nbd_OnKestrel_QemuIoWritesReadBack(string transport)
    {
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"), "--protocol-transport", transport);
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest("db", "db", "nbd"));

        var io = await ProcessRunner.RunAsync(
            ToolTimeout,
            "qemu-io",
            "-f", "raw",
            "-c", "write -P 0x5a 1M 3M",
            "-c", "write -P 0xa5 8k 4k",
            "-c", "flush",
            "-c", "read -P 0x5a 1M 3M",
            "-c", "read -P 0xa5 8k 4k",
            "-c", "read -P 0 0 8k",
            export.Url!);

        io.AssertSuccess();
        Assert.DoesNotContain("Pattern verification failed", io.StandardOutput, StringComparison.Ordinal);
        Assert.Contains($"run on Kestrel's socket transport ({transport})", server.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Iscsi_OnKestrel_LoginInquiryWriteReadBack()
    {
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"), "--protocol-transport", "kestrel");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest("mail", Protocol: "iscsi"));

        var inquiry = await ProcessRunner.RunAsync(ToolTimeout, "iscsi-inq", export.Url!);
        var io = await ProcessRunner.RunAsync(
            ToolTimeout,
            "qemu-io",
            "-f", "raw",
            "-c", "write -P 0x3c 0 2M",
            "-c", "write -P 0xc3 4M 4k",
            "-c", "read -P 0x3c 0 2M",
            "-c", "read -P 0xc3 4M 4k",
            export.Url!);

        inquiry.AssertSuccess();
        io.AssertSuccess();
        Assert.Contains("TIDEMARK", inquiry.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain("Pattern verification failed", io.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("run on Kestrel's socket transport (kestrel)", server.Log, StringComparison.Ordinal);
    }

    /// <summary>
    /// The caps and the handshake deadline of the hand-written transport hold on Kestrel too: of three
    /// idle connections from one address with a cap of two, the third is closed before the greeting,
    /// the other two get it and are closed at the deadline; a client from another address is served.
    /// </summary>
    [Fact]
    public async Task Nbd_OnKestrel_PerSourceCapAndHandshakeDeadlineCloseIdleConnections()
    {
        await using var server = await ServerProcess.StartAsync(
            _temp.Combine("data"), "--protocol-transport", "kestrel", "--handshake-timeout", "2s", "--max-connections-per-source", "2");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 8 << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest("db", "db", "nbd"));
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                held.Add(socket);
                socket.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
                await socket.ConnectAsync(IPEndPoint.Parse(server.Nbd));
                if (i < 2)
                {
                    // Admitted: wait for the greeting, so the next connection is counted after this one.
                    Assert.True(await ReceiveSomeAsync(socket) > 0, $"connection {i} got no greeting");
                }
            }

            var afterRefusal = await ReceiveUntilClosedAsync(held[2]);

            // Nothing else closes a connection that sent nothing (Kestrel mode has no idle timeout):
            // these return only because the handshake deadline passed.
            await ReceiveUntilClosedAsync(held[0]);
            await ReceiveUntilClosedAsync(held[1]);
            var io = await ProcessRunner.RunAsync(ToolTimeout, "qemu-io", "-f", "raw", "-c", "write -P 0x42 0 64k", "-c", "read -P 0x42 0 64k", export.Url!);

            Assert.Equal(0, afterRefusal);
            io.AssertSuccess();
        }
        finally
        {
            foreach (var socket in held)
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>NBD's splice path would wait on the very epoll thread it runs on: refused, not hung.</summary>
    [Fact]
    public async Task Serve_KestrelSpliceWithInlineCompletions_RefusedAsBadInput()
    {
        var serve = await ProcessRunner.RunWithEnvironmentAsync(
            ToolTimeout,
            new Dictionary<string, string?> { ["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = "1" },
            "dotnet",
            CliProcess.DllPath,
            "serve",
            "--data", _temp.Combine("data"),
            "--http", "127.0.0.1:0",
            "--nbd", "127.0.0.1:0",
            "--iscsi", "127.0.0.1:0",
            "--replication", "off",
            "--store-capacity", "1G",
            "--protocol-transport", "kestrel-splice");

        Assert.Equal(2, serve.ExitCode);
        Assert.Contains("kestrel-splice deadlocks with DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1", serve.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_UnknownProtocolTransport_ThrowsNamingTheChoices()
    {
        var error = Assert.Throws<ArgumentException>(() => (new ServerSettings() with { ProtocolTransport = "uring" }).Validate());

        Assert.Contains("protocol-transport 'uring'", error.Message, StringComparison.Ordinal);
        Assert.Contains("native, kestrel, kestrel-splice", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Save_ProtocolTransport_NotWrittenToTheConfigFile()
    {
        var path = _temp.Combine("tidemark.json");

        (new ServerSettings() with { ProtocolTransport = ProtocolTransports.Kestrel }).Save(path);

        Assert.DoesNotContain("protocolTransport", File.ReadAllText(path), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(ProtocolTransports.Native, ServerSettings.Load(path).ProtocolTransport);
    }

    private static async Task<int> ReceiveSomeAsync(Socket socket)
    {
        using var timeout = new CancellationTokenSource(ToolTimeout);
        return await socket.ReceiveAsync(new byte[4096], SocketFlags.None, timeout.Token);
    }

    /// <summary>Bytes received until the server closed (or reset) the connection; fails if it never does.</summary>
    private static async Task<int> ReceiveUntilClosedAsync(Socket socket)
    {
        using var timeout = new CancellationTokenSource(ToolTimeout);
        var total = 0;
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                if (read == 0)
                {
                    return total;
                }

                total += read;
            }
        }
        catch (SocketException)
        {
            return total; // reset: closed as well
        }
    }
}
