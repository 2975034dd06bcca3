using Tidemark.Server.WebConsole;

namespace Tidemark.Console.Tests;

public sealed class SeriesRingTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 6, 10, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Keeps_the_newest_samples_with_zeros_where_a_name_was_quiet_and_drops_names_quiet_for_a_whole_ring()
    {
        var ring = new SeriesRing(capacity: 4, width: 2);
        ring.Add(Start, [("a", [1, 10]), ("b", [2, 20])]);
        ring.Add(Start.AddSeconds(5), [("a", [3, 30])]);
        Assert.Equal(new[] { new[] { 1f, 10f }, new[] { 3f, 30f } }, ring.Get("a").Select(s => s.Values));
        Assert.Equal(new[] { new[] { 2f, 20f }, new[] { 0f, 0f } }, ring.Get("b").Select(s => s.Values));

        for (var i = 2; i < 7; i++)
        {
            ring.Add(Start.AddSeconds(5 * i), [("a", [i, 0])]);
        }

        // Bounded: four samples, the newest; b was quiet for four samples and is gone.
        Assert.Equal(new[] { Start.AddSeconds(15), Start.AddSeconds(20), Start.AddSeconds(25), Start.AddSeconds(30) }, ring.Get("a").Select(s => s.Time));
        Assert.Equal(new[] { 3f, 4f, 5f, 6f }, ring.Get("a").Select(s => s.Values[0]));
        Assert.Equal(1, ring.Names);
        Assert.All(ring.Get("b"), s => Assert.Equal(new[] { 0f, 0f }, s.Values));

        var (times, series) = ring.All();
        Assert.Equal(4, times.Count);
        Assert.Equal(new[] { 3f, 0f, 4f, 0f, 5f, 0f, 6f, 0f }, Assert.Single(series).Values);
    }

    [Fact]
    public void A_sample_of_the_wrong_width_is_refused()
    {
        var ring = new SeriesRing(4, 2);
        Assert.Throws<ArgumentException>(() => ring.Add(Start, [("a", [1])]));
    }
}
