using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

public sealed class CatalogTests
{
    [Fact]
    public void TryGet_EmptyNameWithDefault_ReturnsDefaultExport()
    {
        var catalog = new NbdExportCatalog { DefaultExportName = "main" };
        var main = new NbdExport("main", new MemoryBlockDevice(4096));
        catalog.Set(main);

        Assert.True(catalog.TryGet(string.Empty, out var found));
        Assert.Same(main, found);
    }

    [Fact]
    public void TryGet_EmptyNameWithoutDefault_ReturnsFalse()
    {
        var catalog = new NbdExportCatalog();
        catalog.Set(new NbdExport("main", new MemoryBlockDevice(4096)));

        Assert.False(catalog.TryGet(string.Empty, out _));
    }

    [Fact]
    public void TryAdd_DuplicateName_ReturnsFalse()
    {
        var catalog = new NbdExportCatalog();

        Assert.True(catalog.TryAdd(new NbdExport("a", new MemoryBlockDevice(4096))));
        Assert.False(catalog.TryAdd(new NbdExport("a", new MemoryBlockDevice(4096))));
    }

    [Fact]
    public void List_ManyExports_SortedByName()
    {
        var catalog = new NbdExportCatalog();
        foreach (var name in new[] { "c", "a", "b" })
        {
            catalog.Set(new NbdExport(name, new MemoryBlockDevice(4096)));
        }

        Assert.Equal(["a", "b", "c"], catalog.List().Select(e => e.Name));
    }

    [Fact]
    public void AddAndRemove_FromManyThreads_KeepsCatalogConsistent()
    {
        var catalog = new NbdExportCatalog();
        var device = new MemoryBlockDevice(4096);

        Parallel.For(0, 1000, i =>
        {
            var name = $"e{i % 50}";
            catalog.Set(new NbdExport(name, device));
            catalog.TryGet(name, out _);
            if (i % 3 == 0)
            {
                catalog.Remove(name);
            }

            _ = catalog.List();
        });

        Assert.All(catalog.List(), e => Assert.True(catalog.TryGet(e.Name, out _)));
    }

    [Theory]
    [InlineData("with\0nul")]
    [InlineData(null)]
    public void Export_InvalidName_Throws(string? name)
    {
        name ??= new string('x', 4097);

        Assert.Throws<ArgumentException>(() => new NbdExport(name, new MemoryBlockDevice(4096)));
    }

    [Fact]
    public async Task Remove_WhileSessionInTransmission_OldSessionKeepsDeviceNewSessionsGetUnknown()
    {
        await using var first = NbdServerHarness.Start();
        await first.Client.HandshakeAsync("vol");

        first.Catalog.Remove("vol");
        await using var second = NbdServerHarness.Start(first.Device, catalog: first.Catalog);
        await second.Client.ReadGreetingAsync();
        await second.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        var go = (await second.Client.OptionAsync(NbdOptionType.Go, NbdTestClient.InfoData("vol"))).Single();
        await first.Client.SendRequestAsync(NbdCommand.Flush, 1, 0, 0);

        Assert.Equal(NbdOptionReplyType.ErrorUnknown, go.Type);
        Assert.Equal(NbdError.None, (await first.Client.ReadSimpleReplyAsync()).Error);
    }

    [Fact]
    public async Task Set_AtRunTime_NewExportVisibleToNextOption()
    {
        await using var server = NbdServerHarness.Start();
        await server.Client.ReadGreetingAsync();
        await server.Client.SendClientFlagsAsync(NbdClientFlags.FixedNewstyle);
        var before = (await server.Client.OptionAsync(NbdOptionType.Info, NbdTestClient.InfoData("late"))).Single();

        server.Catalog.Set(new NbdExport("late", new MemoryBlockDevice(8192)));
        var after = await server.Client.OptionAsync(NbdOptionType.Info, NbdTestClient.InfoData("late"));

        Assert.Equal(NbdOptionReplyType.ErrorUnknown, before.Type);
        Assert.Equal(8192ul, NbdTestClient.ParseInfoExport(after[0]).SizeBytes);
    }
}
