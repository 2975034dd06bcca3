using System.Collections.Concurrent;
using Tidemark.Server.WebConsole;

namespace Tidemark.Console.Tests;

public sealed class ConsoleUpdatesTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public void TryOpen_past_the_cap_of_a_session_is_refused_and_a_closed_stream_frees_its_place()
    {
        var updates = new ConsoleUpdates(TimeProvider.System);
        var leases = Enumerable.Range(0, ConsoleUpdates.MaxStreamsPerSession).Select(i => updates.TryOpen("s1", out _)).ToList();
        Assert.All(leases, Assert.NotNull);

        Assert.Null(updates.TryOpen("s1", out var refusal));
        Assert.Contains("close a tab", refusal, StringComparison.Ordinal);
        Assert.NotNull(updates.TryOpen("s2", out _)); // another session is not counted against this one

        leases[0]!.Dispose();
        Assert.NotNull(updates.TryOpen("s1", out _));
        Assert.Equal(ConsoleUpdates.MaxStreamsPerSession + 1, updates.Count);
    }

    [Fact]
    public async Task RunAsync_sends_an_event_only_when_its_text_changed_and_a_heartbeat_when_silent()
    {
        var updates = new ConsoleUpdates(TimeProvider.System, tick: TimeSpan.FromMilliseconds(10), heartbeat: TimeSpan.FromMilliseconds(100));
        var lease = updates.TryOpen("s1", out _)!;
        var written = new ConcurrentQueue<string>();
        var data = "1";
        using var stop = new CancellationTokenSource();
        var run = updates.RunAsync(lease, () => [("summary", data), ("jobs", "[]")], () => true, (text, _) => { written.Enqueue(text); return Task.CompletedTask; }, stop.Token);

        await WaitUntil(() => written.Any(w => w.Contains(": heartbeat", StringComparison.Ordinal)));
        data = "2";
        await WaitUntil(() => written.Any(w => w.Contains("data: 2", StringComparison.Ordinal)));
        await stop.CancelAsync();
        await run.WaitAsync(Patience);

        var all = string.Concat(written);
        Assert.StartsWith($"retry: {ConsoleUpdates.RetryMilliseconds}\n\n", all, StringComparison.Ordinal);
        Assert.Equal(1, Occurrences(all, "event: summary\ndata: 1\n\n"));
        Assert.Equal(1, Occurrences(all, "event: summary\ndata: 2\n\n"));
        Assert.Equal(1, Occurrences(all, "event: jobs\ndata: []\n\n"));
        Assert.Equal(0, updates.Count);
    }

    [Fact]
    public async Task CloseSession_ends_every_stream_of_that_session_and_no_other()
    {
        var updates = new ConsoleUpdates(TimeProvider.System, tick: TimeSpan.FromMilliseconds(10));
        Task Run(string session) => updates.RunAsync(updates.TryOpen(session, out _)!, () => [], () => true, (_, _) => Task.CompletedTask, CancellationToken.None);
        var mine = new[] { Run("s1"), Run("s1") };
        var other = Run("s2");

        updates.CloseSession("s1");
        await Task.WhenAll(mine).WaitAsync(Patience);
        Assert.False(other.IsCompleted);
        Assert.Equal(1, updates.Count);

        updates.CloseSession("s2");
        await other.WaitAsync(Patience);
        Assert.Equal(0, updates.Count);
    }

    [Fact]
    public async Task RunAsync_ends_when_the_session_is_no_longer_live()
    {
        var updates = new ConsoleUpdates(TimeProvider.System, tick: TimeSpan.FromMilliseconds(10));
        var live = true;
        var run = updates.RunAsync(updates.TryOpen("s1", out _)!, () => [], () => Volatile.Read(ref live), (_, _) => Task.CompletedTask, CancellationToken.None);
        Volatile.Write(ref live, false);
        await run.WaitAsync(Patience);
        Assert.Equal(0, updates.Count);
    }

    [Fact]
    public async Task RunAsync_ends_quietly_when_the_client_connection_breaks()
    {
        var updates = new ConsoleUpdates(TimeProvider.System, tick: TimeSpan.FromMilliseconds(10));
        var run = updates.RunAsync(updates.TryOpen("s1", out _)!, () => [("jobs", "[]")], () => true, (_, _) => throw new IOException("connection reset"), CancellationToken.None);
        await run.WaitAsync(Patience);
        Assert.Equal(0, updates.Count);
    }

    private static int Occurrences(string text, string part)
    {
        var n = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + part.Length, StringComparison.Ordinal))
        {
            n++;
        }

        return n;
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the stream did not write what was expected in time");
            await Task.Delay(10);
        }
    }
}
