using Tidemark.Protocols.Iscsi.Tests.TestHost;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>libiscsi's command-line tools against the target over real TCP.</summary>
public sealed class InteropToolTests
{
    private static readonly TimeSpan _timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task IscsiLs_Discovery_ListsTargetAndLun()
    {
        await using var server = IscsiTestServer.WithMemoryDisk(64L << 20, out _);
        var result = await ExternalProcess.RunAsync("iscsi-ls", ["-s", $"iscsi://{server.Portal}"], _timeout);
        Assert.True(result.ExitCode == 0, result.All);
        Assert.Contains(IscsiTestServer.TargetName, result.StdOut, StringComparison.Ordinal);
        Assert.Contains("Lun:0", result.StdOut, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IscsiInq_StandardPage_ReportsVendorAndProduct()
    {
        await using var server = IscsiTestServer.WithMemoryDisk(64L << 20, out _);
        var result = await ExternalProcess.RunAsync("iscsi-inq", [server.Url()], _timeout);
        Assert.True(result.ExitCode == 0, result.All);
        Assert.Contains("TIDEMARK", result.StdOut, StringComparison.Ordinal);
        Assert.Contains("VOLUME", result.StdOut, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IscsiReadCapacity16_MemoryDisk_ReportsSizeAndThinProvisioning()
    {
        await using var server = IscsiTestServer.WithMemoryDisk(64L << 20, out _);
        var result = await ExternalProcess.RunAsync("iscsi-readcapacity16", [server.Url()], _timeout);
        Assert.True(result.ExitCode == 0, result.All);
        Assert.Contains("RETURNED LOGICAL BLOCK ADDRESS:131071", result.StdOut, StringComparison.Ordinal);
        Assert.Contains("LOGICAL BLOCK LENGTH IN BYTES:512", result.StdOut, StringComparison.Ordinal);
        Assert.Contains("LBPME:1 LBPRZ:1", result.StdOut, StringComparison.Ordinal);
    }

    [Fact]
    public async Task QemuImg_ConvertToIscsiUrl_CopiesImageExactly()
    {
        const long size = 4L << 20;
        await using var server = IscsiTestServer.WithMemoryDisk(size, out var device);
        var source = Path.Combine(Path.GetTempPath(), $"tidemark-qemu-{Guid.NewGuid():N}.raw");
        var data = new byte[size];
        new Random(5).NextBytes(data);
        await File.WriteAllBytesAsync(source, data);
        try
        {
            var info = await ExternalProcess.RunAsync("qemu-img", ["info", server.Url()], _timeout);
            Assert.True(info.ExitCode == 0, info.All);
            Assert.Contains("virtual size: 4 MiB", info.StdOut, StringComparison.Ordinal);

            var convert = await ExternalProcess.RunAsync("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, server.Url()], _timeout);
            Assert.True(convert.ExitCode == 0, convert.All);
            var stored = new byte[size];
            device.Read(0, stored);
            Assert.Equal(data, stored);

            var compare = await ExternalProcess.RunAsync("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, server.Url()], _timeout);
            Assert.True(compare.ExitCode == 0, compare.All);
        }
        finally
        {
            File.Delete(source);
        }
    }

    [Fact]
    public async Task IscsiLs_InitiatorNotAllowed_SeesNoTargets()
    {
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(IscsiTestServer.TargetName, [new IscsiLunDefinition(0, new Tidemark.TestKit.MemoryBlockDevice(1 << 20))])
        {
            AllowedInitiators = ["iqn.2026-11.dev.tidemark:only-this-one"],
        });
        await using var server = new IscsiTestServer(catalog);
        var result = await ExternalProcess.RunAsync("iscsi-ls", ["-i", "iqn.2026-11.dev.tidemark:intruder", $"iscsi://{server.Portal}"], _timeout);
        Assert.DoesNotContain(IscsiTestServer.TargetName, result.StdOut, StringComparison.Ordinal);

        var inq = await ExternalProcess.RunAsync("iscsi-inq", ["-i", "iqn.2026-11.dev.tidemark:intruder", server.Url()], _timeout);
        Assert.NotEqual(0, inq.ExitCode);
    }

    [Fact]
    public async Task IscsiInq_ChapTarget_LogsInWithSecretAndFailsWithout()
    {
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(IscsiTestServer.TargetName, [new IscsiLunDefinition(0, new Tidemark.TestKit.MemoryBlockDevice(1 << 20))])
        {
            Chap = new IscsiChapCredentials("alice", "alice-secret-12"),
        });
        await using var server = new IscsiTestServer(catalog);

        var good = await ExternalProcess.RunAsync("iscsi-inq", [$"iscsi://alice%alice-secret-12@{server.Portal}/{IscsiTestServer.TargetName}/0"], _timeout);
        Assert.True(good.ExitCode == 0, good.All);
        Assert.Contains("TIDEMARK", good.StdOut, StringComparison.Ordinal);

        var bad = await ExternalProcess.RunAsync("iscsi-inq", [$"iscsi://alice%wrong-secret-1@{server.Portal}/{IscsiTestServer.TargetName}/0"], _timeout);
        Assert.NotEqual(0, bad.ExitCode);
    }

    [Fact]
    public async Task IscsiInq_MutualChap_TargetAuthenticatesToInitiator()
    {
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(IscsiTestServer.TargetName, [new IscsiLunDefinition(0, new Tidemark.TestKit.MemoryBlockDevice(1 << 20))])
        {
            Chap = new IscsiChapCredentials("alice", "alice-secret-12"),
            MutualChap = new IscsiChapCredentials("target", "target-secret-1"),
        });
        await using var server = new IscsiTestServer(catalog);
        var url = $"iscsi://alice%alice-secret-12@{server.Portal}/{IscsiTestServer.TargetName}/0";

        var good = await ExternalProcess.RunAsync("iscsi-inq", [$"{url}?target_user=target&target_password=target-secret-1"], _timeout);
        Assert.True(good.ExitCode == 0, good.All);

        var wrongTargetSecret = await ExternalProcess.RunAsync("iscsi-inq", [$"{url}?target_user=target&target_password=not-the-secret"], _timeout);
        Assert.NotEqual(0, wrongTargetSecret.ExitCode);
    }

    [Fact]
    public async Task IscsiTestCu_HeaderDigestCrc32c_ReadWriteFamiliesPass()
    {
        await using var server = IscsiTestServer.WithMemoryDisk(64L << 20, out _);
        var result = await ExternalProcess.RunAsync("iscsi-test-cu", ["--dataloss", "--test=SCSI.Write10", $"{server.Url()}?header_digest=crc32c"], _timeout);
        Assert.Matches(@"tests\s+\d+\s+\d+\s+\d+\s+0\s", result.StdOut);
        Assert.DoesNotMatch(@"tests\s+0\s", result.StdOut);
    }
}
