using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Server.Tests;

/// <summary>
/// Issue 22 through a real initiator: qemu's libiscsi driver with many READs in flight on a LUN
/// whose volume lives on a one-node Ceph cluster, so they are started without a thread waiting for
/// them, end on librados's thread and are answered by the connection's replier (ADR 0021, iSCSI).
/// </summary>
public sealed class RadosIscsiReadTests(CephCluster cluster) : IClassFixture<CephCluster>, IDisposable
{
    private const int Chunks = 64;
    private const int ChunkBytes = 4096;
    private const int LargeReads = 8;
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task QemuIo_ManyReadsInFlight_OnARadosBackedLun_EachReturnsItsPattern()
    {
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"), "--store-path", cluster.Location(), "--store-capacity", "256M");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("par", 16L << 20));
        var lun = await client.CreateExportAsync(new CreateExportRequest("par", "lun", "iscsi"));

        // Each 4 KiB chunk its own pattern, and 1 MiB regions after them, written through the LUN.
        var writes = new List<string> { "-f", "raw" };
        var reads = new List<string> { "-f", "raw" };
        for (var i = 0; i < Chunks; i++)
        {
            writes.AddRange(["-c", Invariant($"write -P {i + 1} {i * ChunkBytes} {ChunkBytes}")]);
            reads.AddRange(["-c", Invariant($"aio_read -P {i + 1} {i * ChunkBytes} {ChunkBytes}")]);
        }

        for (var i = 0; i < LargeReads; i++)
        {
            writes.AddRange(["-c", Invariant($"write -P {0x80 + i} {(i + 1) << 20} 1M")]);
            reads.AddRange(["-c", Invariant($"aio_read -P {0x80 + i} {(i + 1) << 20} 1M")]);
        }

        writes.AddRange(["-c", "flush", lun.Url!]);

        // The session stays logged in a while after the reads, so its replier thread can be seen.
        reads.AddRange(["-c", "aio_flush", "-c", "sleep 3000", lun.Url!]);
        (await ProcessRunner.RunAsync(TimeSpan.FromSeconds(120), "qemu-io", [.. writes])).AssertSuccess();

        // qemu-io queues every aio_read before the flush waits for them: up to 72 READs in flight on one connection.
        var reading = ProcessRunner.RunAsync(TimeSpan.FromSeconds(120), "qemu-io", [.. reads]);
        var replier = false;
        while (!reading.IsCompleted && !replier)
        {
            replier = ThreadNames(server.Pid).Contains(Protocols.Iscsi.IscsiConnection.ReplierThreadName);
            await Task.Delay(50);
        }

        var result = (await reading).AssertSuccess();
        Assert.True(replier, "the READs were answered by the connection's replier (started asynchronously)");

        var output = result.StandardOutput + result.StandardError;
        Assert.DoesNotContain("failed", output, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(Chunks, CountOf(output, $"read {ChunkBytes}/{ChunkBytes} bytes"));
        Assert.Equal(LargeReads, CountOf(output, "read 1048576/1048576 bytes"));
        Assert.True((await client.VerifyAsync()).Clean);
    }

    private static string[] ThreadNames(int pid)
    {
        var names = new List<string>();
        foreach (var task in Directory.GetDirectories($"/proc/{pid}/task"))
        {
            try
            {
                names.Add(File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n'));
            }
            catch (IOException)
            {
                // The thread ended meanwhile.
            }
        }

        return [.. names];
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static int CountOf(string text, string what)
    {
        var count = 0;
        for (var at = text.IndexOf(what, StringComparison.Ordinal); at >= 0; at = text.IndexOf(what, at + what.Length, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }
}
