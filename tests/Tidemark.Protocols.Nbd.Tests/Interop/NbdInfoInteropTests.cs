using System.Text.Json;
using Tidemark.TestKit;
using Xunit.Abstractions;

namespace Tidemark.Protocols.Nbd.Tests.Interop;

[CollectionDefinition(nameof(InteropCollection))]
public sealed class InteropCollection;

/// <summary>libnbd's nbdinfo (Debian libnbd-bin) against the server over TCP.</summary>
[Collection(nameof(InteropCollection))]
public sealed class NbdInfoInteropTests(ITestOutputHelper output)
{
    [Fact]
    public async Task NbdInfo_Json_ShowsSizeFlagsAndBlockSizes()
    {
        var catalog = new NbdExportCatalog();
        catalog.Set(new NbdExport("vol", new MemoryBlockDevice(16 * 1024 * 1024, logicalBlockSizeBytes: 4096), "a test volume"));
        await using var host = new TcpNbdHost(catalog);

        var result = (await ProcessRunner.RunAsync("nbdinfo", "--json", host.Url("vol"))).AssertSuccess();
        output.WriteLine(result.StandardOutput);

        using var json = JsonDocument.Parse(result.StandardOutput);
        Assert.Equal("newstyle-fixed", json.RootElement.GetProperty("protocol").GetString());
        var export = json.RootElement.GetProperty("exports")[0];
        Assert.Equal("vol", export.GetProperty("export-name").GetString());
        Assert.Equal("a test volume", export.GetProperty("description").GetString());
        Assert.Equal(16 * 1024 * 1024, export.GetProperty("export-size").GetInt64());
        Assert.False(export.GetProperty("is_read_only").GetBoolean());
        foreach (var capability in new[] { "can_flush", "can_fua", "can_multi_conn", "can_trim", "can_zero", "can_fast_zero", "can_cache", "can_df" })
        {
            Assert.True(export.GetProperty(capability).GetBoolean(), capability);
        }

        Assert.Equal(4096, export.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(32 * 1024 * 1024, export.GetProperty("block_size_maximum").GetInt32());
    }

    [Fact]
    public async Task NbdInfo_ReadOnlyExport_ShowsReadOnly()
    {
        var catalog = new NbdExportCatalog { DefaultExportName = "snap" };
        catalog.Set(new NbdExport("snap", new MemoryBlockDevice(1024 * 1024), readOnly: true));
        await using var host = new TcpNbdHost(catalog);

        var result = (await ProcessRunner.RunAsync("nbdinfo", "--json", host.Url())).AssertSuccess();

        using var json = JsonDocument.Parse(result.StandardOutput);
        var export = json.RootElement.GetProperty("exports")[0];
        Assert.True(export.GetProperty("is_read_only").GetBoolean());
        Assert.False(export.GetProperty("can_trim").GetBoolean());
    }

    [Fact]
    public async Task NbdInfo_Map_ShowsHolesOfSparseDevice()
    {
        var device = new MemoryBlockDevice(8 * 1024 * 1024);
        device.Write(0, new byte[65536].Select(_ => (byte)1).ToArray(), false);
        device.Write(4 * 1024 * 1024, new byte[4096].Select(_ => (byte)2).ToArray(), false);
        var catalog = new NbdExportCatalog();
        catalog.Set(new NbdExport("sparse", device));
        await using var host = new TcpNbdHost(catalog);

        var result = (await ProcessRunner.RunAsync("nbdinfo", "--map", "--json", host.Url("sparse"))).AssertSuccess();
        output.WriteLine(result.StandardOutput);

        using var json = JsonDocument.Parse(result.StandardOutput);
        var extents = json.RootElement.EnumerateArray()
            .Select(e => (e.GetProperty("offset").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("type").GetInt32()))
            .ToArray();
        Assert.Equal(
            [(0L, 65536L, 0), (65536L, (4 * 1024 * 1024) - 65536L, 3), (4L * 1024 * 1024, 4096L, 0), ((4L * 1024 * 1024) + 4096, (4L * 1024 * 1024) - 4096, 3)],
            extents);
    }

    [Fact]
    public async Task NbdInfo_List_ListsEveryExport()
    {
        var catalog = new NbdExportCatalog();
        catalog.Set(new NbdExport("alpha", new MemoryBlockDevice(1024 * 1024), "first"));
        catalog.Set(new NbdExport("beta", new MemoryBlockDevice(2 * 1024 * 1024), "second"));
        await using var host = new TcpNbdHost(catalog);

        var result = (await ProcessRunner.RunAsync("nbdinfo", "--list", "--json", host.Url())).AssertSuccess();
        output.WriteLine(result.StandardOutput);

        using var json = JsonDocument.Parse(result.StandardOutput);
        var exports = json.RootElement.GetProperty("exports").EnumerateArray()
            .Select(e => (e.GetProperty("export-name").GetString(), e.GetProperty("export-size").GetInt64()))
            .OrderBy(e => e.Item1, StringComparer.Ordinal)
            .ToArray();
        Assert.Equal([("alpha", 1024L * 1024), ("beta", 2L * 1024 * 1024)], exports);
    }
}
