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
}
