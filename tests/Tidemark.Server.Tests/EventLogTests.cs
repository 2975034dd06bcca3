using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Api;
using Tidemark.Server.Events;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The event log file itself: ordering, filters, paging, rotation, crash-torn lines, reopen.</summary>
public sealed class EventLogTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly SteppingClock _clock = new(new DateTimeOffset(2026, 11, 24, 8, 0, 0, TimeSpan.Zero));

    private string PathOf => _temp.Combine("events.jsonl");

    public void Dispose() => _temp.Dispose();

    private EventLog Open(long maxFileBytes = EventLog.DefaultMaxFileBytes) =>
        new(PathOf, _clock, NullLogger.Instance, maxFileBytes);

    [Fact]
    public void Query_WithFilters_ReturnsMatchingEventsOldestFirst()
    {
        using var log = Open();
        log.Record("volume.create", "mail", "token:abc", "created");
        log.Record("snapshot.create", "mail@monday", "token:abc", "created");
        log.Record("snapshot.delete", "mail@monday", "policy:nightly", "deleted");
        log.Record("snapshots.weird", "x", "server", "not in the snapshot family");
        log.Record("volume.delete", "db", "token:abc", "refused", "failed");

        var snapshots = log.Query(kind: "snapshot");
        var aboutMonday = log.Query(subject: "mail@monday");
        var exact = log.Query(kind: "snapshot.delete");

        Assert.Equal(["snapshot.create", "snapshot.delete"], snapshots.Select(e => e.Kind));
        Assert.Equal([2L, 3L], aboutMonday.Select(e => e.Sequence));
        Assert.Equal("policy:nightly", Assert.Single(exact).Actor);
        Assert.Equal("failed", log.Query(limit: 1).Single().Outcome);
    }

    [Fact]
    public void Query_AfterAndLimit_PagesForwardAndTailsNewest()
    {
        using var log = Open();
        for (var i = 0; i < 25; i++)
        {
            log.Record("volume.resize", "v", "server", $"step {i}");
        }

        var newest = log.Query(limit: 5);
        var firstPage = log.Query(after: 0, limit: 10);
        var secondPage = log.Query(after: firstPage[^1].Sequence, limit: 10);
        var since = log.Query(since: _clock.Start.AddMinutes(20), limit: 100);

        Assert.Equal([21L, 22L, 23L, 24L, 25L], newest.Select(e => e.Sequence));
        Assert.Equal(Enumerable.Range(1, 10).Select(i => (long)i), firstPage.Select(e => e.Sequence));
        Assert.Equal(Enumerable.Range(11, 10).Select(i => (long)i), secondPage.Select(e => e.Sequence));
        Assert.Equal(Enumerable.Range(21, 5).Select(i => (long)i), since.Select(e => e.Sequence));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(EventLog.MaxQueryLimit + 1)]
    public void Query_LimitOutOfRange_IsRefused(int limit)
    {
        using var log = Open();

        var error = Assert.Throws<StorageException>(() => log.Query(limit: limit));

        Assert.Equal(StorageError.InvalidArgument, error.Error);
    }

    [Fact]
    public void Reopen_ContinuesSequenceAndKeepsEvents()
    {
        using (var log = Open())
        {
            log.Record("volume.create", "a", "server", "one");
            log.Record("volume.create", "b", "server", "two");
        }

        using var reopened = Open();
        var third = reopened.Record("volume.create", "c", "server", "three");

        Assert.Equal(3, third.Sequence);
        Assert.Equal(["a", "b", "c"], reopened.Query().Select(e => e.Subject));
    }

    [Fact]
    public void TornLastLine_IsSkippedAndNextEventStartsOnItsOwnLine()
    {
        using (var log = Open())
        {
            log.Record("volume.create", "a", "server", "one");
        }

        File.AppendAllText(PathOf, "{\"sequence\":2,\"time\":\"2026-11-24T08:");

        using var reopened = Open();
        var next = reopened.Record("volume.create", "b", "server", "two");

        Assert.Equal(2, next.Sequence);
        Assert.Equal(["a", "b"], reopened.Query().Select(e => e.Subject));
    }

    [Fact]
    public void Rotation_KeepsPreviousFileQueryableAndBoundsDisk()
    {
        using var log = Open(maxFileBytes: 4096);
        for (var i = 0; i < 200; i++)
        {
            log.Record("snapshot.create", $"v@s{i}", "server", new string('x', 100));
        }

        var all = log.Query(limit: EventLog.MaxQueryLimit);
        var files = Directory.GetFiles(_temp.Path, "events*.jsonl").Where(f => !f.Contains("refused", StringComparison.Ordinal)).ToList();
        var perFile = File.ReadAllLines(_temp.Combine("events.1.jsonl")).Length;

        Assert.Equal(EventLog.MainGenerations, files.Count);
        Assert.All(files, f => Assert.True(new FileInfo(f).Length <= 4096, $"{f} is {new FileInfo(f).Length} bytes"));
        Assert.Equal(200, all[^1].Sequence);
        Assert.Equal(Enumerable.Range((int)all[0].Sequence, all.Count).Select(i => (long)i), all.Select(e => e.Sequence));

        // Every generation but the newest is full: between three and four files' worth is kept.
        Assert.InRange(all.Count, (EventLog.MainGenerations - 1) * perFile, EventLog.MainGenerations * perFile);
        Assert.InRange(all.Count, 20, 199);
    }

    [Fact]
    public void File_IsReadableByOwnerOnly()
    {
        using var log = Open();
        log.Record("volume.create", "a", "server", "one");

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(PathOf));
    }

    /// <summary>Each reading of the clock is one minute after the previous.</summary>
    private sealed class SteppingClock(DateTimeOffset start) : TimeProvider
    {
        private int _reads;

        public DateTimeOffset Start { get; } = start;

        public override DateTimeOffset GetUtcNow() => Start.AddMinutes(Interlocked.Increment(ref _reads) - 1);
    }
}
