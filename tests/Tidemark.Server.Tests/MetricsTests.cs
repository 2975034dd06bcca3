using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Tidemark.Api;
using Tidemark.Server.Metrics;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

public sealed partial class MetricsTests
{
    [Fact]
    public void MeteredDevice_CountsOperationsBytesErrorsAndLatency()
    {
        var io = new IoMetrics();
        var device = io.Wrap("mail", new MemoryBlockDevice(1 << 20));
        var buffer = new byte[8192];

        device.Write(0, buffer, forceUnitAccess: false);
        device.Write(8192, buffer, forceUnitAccess: true);
        device.Read(0, buffer.AsSpan(0, 4096));
        device.Unmap(0, 4096);
        device.Flush();
        Assert.ThrowsAny<Exception>(() => device.Read(1 << 20, buffer));

        var stats = io.Find("mail")!;
        Assert.Equal(2, stats[IoOperation.Write].Count);
        Assert.Equal(16384, stats[IoOperation.Write].Bytes);
        Assert.Equal(2, stats[IoOperation.Read].Count);
        Assert.Equal(4096, stats[IoOperation.Read].Bytes);
        Assert.Equal(1, stats[IoOperation.Read].Errors);
        Assert.Equal(4096, stats[IoOperation.Unmap].Bytes);
        Assert.Equal(1, stats[IoOperation.Flush].Count);
        Assert.Equal(2, stats[IoOperation.Write].Buckets.Sum());
    }

    [Fact]
    public void Sample_EscapesLabelValues()
    {
        var b = new StringBuilder();

        PrometheusText.Sample(b, "x", [("device", "a\"b\\c\nd")], 1.5);

        Assert.Equal("x{device=\"a\\\"b\\\\c\\nd\"} 1.5\n", b.ToString());
    }

    [Fact]
    public async Task Metrics_OfRealServer_CountNbdIoAndDescribePool()
    {
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"));
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        await client.CreateSnapshotAsync("db", "s1");
        var export = await client.CreateExportAsync(new CreateExportRequest("db", "db", "nbd"));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x41 0 64k", "-c", "read -P 0x41 0 64k", "-c", "flush", export.Url!)).AssertSuccess();
        using var http = new HttpClient { BaseAddress = server.Http };

        using var anonymous = await http.GetAsync("metrics");
        http.DefaultRequestHeaders.Authorization = new("Bearer", server.Token);
        using var response = await http.GetAsync("metrics");
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        var samples = Parse(text);
        Assert.Equal(65536, samples["tidemark_io_bytes_total{device=\"db\",op=\"write\"}"]);
        Assert.True(samples["tidemark_io_operations_total{device=\"db\",op=\"read\"}"] >= 1, text);
        Assert.True(samples["tidemark_io_operations_total{device=\"db\",op=\"flush\"}"] >= 1, text);
        Assert.Equal(
            samples["tidemark_io_operations_total{device=\"db\",op=\"write\"}"],
            samples["tidemark_io_latency_seconds_bucket{device=\"db\",op=\"write\",le=\"+Inf\"}"]);
        Assert.Equal(16 << 20, samples["tidemark_volume_size_bytes{volume=\"db\",kind=\"volume\"}"]);
        Assert.Equal(1, samples["tidemark_volume_snapshots{volume=\"db\"}"]);
        Assert.True(samples["tidemark_pool_used_bytes"] >= 65536);
        Assert.Equal(samples["tidemark_pool_capacity_bytes"], samples["tidemark_pool_used_bytes"] + samples["tidemark_pool_free_bytes"]);
        Assert.Equal(1, samples["tidemark_exports{protocol=\"nbd\",state=\"online\"}"]);
        Assert.Contains("# TYPE tidemark_io_latency_seconds histogram", text, StringComparison.Ordinal);
        // Memory by part: a written volume has map pages cached; the managed heap fits in what the
        // GC committed; the store's memtable holds the commits; glibc's heap (this is Linux) is in use.
        Assert.True(samples["tidemark_engine_memory_bytes{part=\"map_cache\"}"] > 0, text);
        Assert.True(samples["tidemark_engine_memory_bytes{part=\"metadata_memtables\"}"] > 0, text);
        Assert.True(samples["tidemark_process_gc_committed_bytes"] >= samples["tidemark_process_gc_heap_bytes"], text);
        Assert.True(samples["tidemark_process_native_heap_bytes{state=\"in_use\"}"] > 0, text);
        Assert.True(samples["tidemark_process_resident_bytes"] > samples["tidemark_engine_memory_bytes{part=\"map_cache\"}"], text);
    }

    /// <summary>Every sample line, checked against the exposition format's grammar.</summary>
    private static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#'))
            {
                Assert.Matches(CommentLine(), line);
                continue;
            }

            var match = SampleLine().Match(line);
            Assert.True(match.Success, $"not a sample line: {line}");
            samples.Add(match.Groups[1].Value, double.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture));
        }

        return samples;
    }

    [GeneratedRegex("""^# (HELP|TYPE) [a-z_]+ .+$""")]
    private static partial Regex CommentLine();

    [GeneratedRegex("""^([a-z_]+(?:\{[a-z_]+="(?:[^"\\]|\\.)*"(?:,[a-z_]+="(?:[^"\\]|\\.)*")*\})?) (-?[0-9.eE+-]+|\+Inf|NaN)$""")]
    private static partial Regex SampleLine();
}
