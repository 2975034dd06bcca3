using System.Diagnostics.Metrics;
using System.Net;
using Tidemark.Api;
using Tidemark.Server.Metrics;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

public sealed class MetricsTests
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
    public async Task Scrape_ThousandVolumesExported_EverySeriesIsThereInTheTextFormat()
    {
        await using var host = await MetricsHost.StartAsync();
        var io = new IoMetrics();
        var buffer = new byte[4096];
        for (var i = 0; i < 1000; i++)
        {
            var device = io.Wrap($"volume-{i:D4}", new MemoryBlockDevice(1 << 20));
            device.Write(0, buffer, forceUnitAccess: false);
        }

        using var meter = new Meter(new MeterOptions(ServerMeter.MeterName) { Scope = host.Scope });
        IoInstruments.Create(meter, io);

        var (text, contentType) = await host.ScrapeRawAsync();
        var scrape = PrometheusExposition.Parse(text);

        Assert.Equal("text/plain", contentType);
        var operations = Enum.GetValues<IoOperation>().Length;
        Assert.Equal(1000 * operations, scrape.Family("tidemark_io_operations_total").Count());
        Assert.Equal(1000 * operations * (OperationStats.BucketBounds.Length + 1), scrape.Family("tidemark_io_latency_seconds_bucket").Count());
        Assert.DoesNotContain(scrape.Samples, s => s.Key.Contains("otel_metric_overflow", StringComparison.Ordinal));
        Assert.Equal(1, scrape["tidemark_io_operations_total{device=\"volume-0999\",op=\"write\"}"]);
        Assert.Equal(4096, scrape["tidemark_io_bytes_total{device=\"volume-0000\",op=\"write\"}"]);
        Assert.Equal(1, scrape["tidemark_io_latency_seconds_bucket{device=\"volume-0500\",le=\"+Inf\",op=\"write\"}"]);
        Assert.Equal(1, scrape["tidemark_io_latency_seconds_count{device=\"volume-0500\",op=\"write\"}"]);
        Assert.Equal(0, scrape["tidemark_io_operations_total{device=\"volume-0500\",op=\"unmap\"}"]);
    }

    [Fact]
    public async Task Scrape_LabelValueWithQuoteBackslashNewline_IsEscaped()
    {
        await using var host = await MetricsHost.StartAsync();
        var io = new IoMetrics();
        io.Wrap("a\"b\\c\nd", new MemoryBlockDevice(1 << 20)).Flush();
        using var meter = new Meter(new MeterOptions(ServerMeter.MeterName) { Scope = host.Scope });
        IoInstruments.Create(meter, io);

        var scrape = await host.ScrapeAsync();

        Assert.Equal(1, scrape[PrometheusExposition.Key("tidemark_io_operations_total", [new("device", "a\"b\\c\nd"), new("op", "flush")])]);
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
        var samples = PrometheusExposition.Parse(text);
        Assert.Equal(65536, samples["tidemark_io_bytes_total{device=\"db\",op=\"write\"}"]);
        Assert.True(samples["tidemark_io_operations_total{device=\"db\",op=\"read\"}"] >= 1, text);
        Assert.True(samples["tidemark_io_operations_total{device=\"db\",op=\"flush\"}"] >= 1, text);
        Assert.Equal(
            samples["tidemark_io_operations_total{device=\"db\",op=\"write\"}"],
            samples["tidemark_io_latency_seconds_bucket{device=\"db\",le=\"+Inf\",op=\"write\"}"]);
        Assert.Equal(16 << 20, samples["tidemark_volume_size_bytes{kind=\"volume\",volume=\"db\"}"]);
        Assert.Equal(1, samples["tidemark_volume_snapshots{volume=\"db\"}"]);
        Assert.True(samples["tidemark_pool_used_bytes"] >= 65536);
        Assert.Equal(samples["tidemark_pool_capacity_bytes"], samples["tidemark_pool_used_bytes"] + samples["tidemark_pool_free_bytes"]);
        Assert.Equal(1, samples["tidemark_exports{protocol=\"nbd\",state=\"online\"}"]);
        Assert.Equal("counter", samples.Types["tidemark_io_latency_seconds_bucket"]);
        // Memory by part: a written volume has map pages cached; the managed heap fits in what the
        // GC committed; the store's memtable holds the commits; glibc's heap (this is Linux) is in use.
        Assert.True(samples["tidemark_engine_memory_bytes{part=\"map_cache\"}"] > 0, text);
        Assert.True(samples["tidemark_engine_memory_bytes{part=\"metadata_memtables\"}"] > 0, text);
        Assert.True(samples["tidemark_process_gc_committed_bytes"] >= samples["tidemark_process_gc_heap_bytes"], text);
        Assert.True(samples["tidemark_process_native_heap_bytes{state=\"in_use\"}"] > 0, text);
        Assert.True(samples["tidemark_process_resident_bytes"] > samples["tidemark_engine_memory_bytes{part=\"map_cache\"}"], text);
    }
}
