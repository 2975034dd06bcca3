using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests;

public sealed class TargetCatalogTests
{
    private const string Name = "iqn.2026-11.dev.tidemark:catalog";

    [Fact]
    public void AddOrUpdate_SameDevice_KeepsLogicalUnitObject()
    {
        using var catalog = new IscsiTargetCatalog();
        var device = new MemoryBlockDevice(1 << 20);
        var first = catalog.AddOrUpdate(new IscsiTargetDefinition(Name, [new IscsiLunDefinition(0, device)]));
        var second = catalog.AddOrUpdate(new IscsiTargetDefinition(Name, [new IscsiLunDefinition(0, device), new IscsiLunDefinition(1, new MemoryBlockDevice(1 << 20))]));

        Assert.Same(first.Units[0], second.Units[0]);
        Assert.Equal(2, second.Units.Count);
        Assert.True(catalog.TryGetTarget(Name.ToUpperInvariant(), out var found));
        Assert.Same(second, found);
    }

    [Fact]
    public void VisibleTo_AllowList_HidesTargetFromOthers()
    {
        using var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Name, [new IscsiLunDefinition(0, new MemoryBlockDevice(1 << 20))])
        {
            AllowedInitiators = ["iqn.2026-11.dev.tidemark:host-a"],
        });

        Assert.Single(catalog.VisibleTo("iqn.2026-11.dev.tidemark:host-a"));
        Assert.Empty(catalog.VisibleTo("iqn.2026-11.dev.tidemark:host-b"));
    }

    [Fact]
    public void Remove_ExistingTarget_IsGone()
    {
        using var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Name, []));

        Assert.True(catalog.Remove(Name));
        Assert.False(catalog.TryGetTarget(Name, out _));
        Assert.False(catalog.Remove(Name));
    }

    [Theory]
    [InlineData("not-a-name")]
    [InlineData("iqn.bad")]
    [InlineData("")]
    public void AddOrUpdate_InvalidName_Throws(string name)
    {
        using var catalog = new IscsiTargetCatalog();
        Assert.Throws<ArgumentException>(() => catalog.AddOrUpdate(new IscsiTargetDefinition(name, [])));
    }

    [Fact]
    public void AddOrUpdate_DuplicateLun_Throws()
    {
        using var catalog = new IscsiTargetCatalog();
        var device = new MemoryBlockDevice(1 << 20);
        Assert.Throws<ArgumentException>(() => catalog.AddOrUpdate(new IscsiTargetDefinition(Name, [new IscsiLunDefinition(3, device), new IscsiLunDefinition(3, device)])));
    }

    [Fact]
    public async Task AddOrUpdate_ConcurrentWithLookups_IsConsistent()
    {
        using var catalog = new IscsiTargetCatalog();
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            for (var i = 0; i < 200; i++)
            {
                catalog.AddOrUpdate(new IscsiTargetDefinition($"{Name}-{w}-{i % 10}", [new IscsiLunDefinition(0, new MemoryBlockDevice(1 << 20))]));
            }
        }));
        var reader = Task.Run(() =>
        {
            for (var i = 0; i < 2000; i++)
            {
                foreach (var target in catalog.VisibleTo("iqn.2026-11.dev.tidemark:x"))
                {
                    Assert.True(target.Units.ContainsKey(0));
                }
            }
        });

        await Task.WhenAll([.. writers, reader]);
        Assert.Equal(40, catalog.Targets.Count);
    }
}
