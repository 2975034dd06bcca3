using FsCheck.Xunit;
using Tidemark.Engine.Map;

namespace Tidemark.Engine.Tests;

/// <summary>The lineage's table of cached map pages, against a dictionary.</summary>
public class PageTableTests
{
    [Fact]
    public void Pages_AreFoundByNumber_AcrossChunks_AndGoneOnceRemoved()
    {
        var table = new PageTable();
        var numbers = new ulong[] { 0, 1, PageTable.ChunkPages - 1, PageTable.ChunkPages, 1_000_003, 409_600_000 };
        foreach (var n in numbers)
        {
            table.Set(n, new MapPage(n));
        }

        Assert.Equal(numbers.Length, table.Count);
        foreach (var n in numbers)
        {
            Assert.True(table.TryGet(n, out var page));
            Assert.Equal(n, page.Number);
        }

        Assert.False(table.TryGet(2, out _));
        Assert.False(table.TryGet(409_600_001, out _));
        Assert.False(table.TryGet(ulong.MaxValue >> 8, out _)); // far beyond the directory

        table.Remove(PageTable.ChunkPages);
        table.Remove(PageTable.ChunkPages); // twice: no effect
        table.Remove(77); // never held
        Assert.False(table.TryGet(PageTable.ChunkPages, out _));
        Assert.Equal(numbers.Length - 1, table.Count);

        table.Clear();
        Assert.Equal(0, table.Count);
        Assert.All(numbers, n => Assert.False(table.TryGet(n, out _)));
    }

    [Fact]
    public void Set_OnAHeldNumber_ReplacesThePage_WithoutCountingItTwice()
    {
        var table = new PageTable();
        table.Set(5, new MapPage(5));
        var second = new MapPage(5);
        table.Set(5, second);
        Assert.Equal(1, table.Count);
        Assert.True(table.TryGet(5, out var found));
        Assert.Same(second, found);
    }

    [Property(MaxTest = 200)]
    public void RandomSetsAndRemoves_MatchADictionary(int[] operations)
    {
        var table = new PageTable();
        var model = new Dictionary<ulong, MapPage>();
        foreach (var op in operations ?? [])
        {
            // Numbers clustered in a few chunks, so chunks empty out and come back.
            var number = (ulong)(Math.Abs(op % 1024) * 3);
            if (op % 3 == 0)
            {
                table.Remove(number);
                model.Remove(number);
            }
            else
            {
                var page = new MapPage(number);
                table.Set(number, page);
                model[number] = page;
            }
        }

        Assert.Equal(model.Count, table.Count);
        for (ulong n = 0; n < 3 * 1024; n++)
        {
            var held = table.TryGet(n, out var page);
            Assert.Equal(model.TryGetValue(n, out var expected), held);
            Assert.Same(expected, page);
        }
    }
}
