using Tidemark.Server.Agents;

namespace Tidemark.Server.Tests;

/// <summary>
/// The post-snapshot mail index queue (docs/adr/0012, "Index after a snapshot"): one build at a time
/// per host, a burst of snapshots of a volume indexes only the newest, a snapshot deleted before its
/// turn is skipped, and a failing build does not stop the queue. At the server's stop the running
/// build is cancelled and awaited, and nothing waiting or queued later starts.
/// </summary>
public sealed class MailIndexQueueTests
{
    [Fact]
    public async Task Enqueue_BurstWhileBuilding_OneAtATimePerHost_NewestPerVolume_DeletedSkipped_FailureDoesNotStopQueue()
    {
        var deleted = new HashSet<string>(StringComparer.Ordinal);
        var ran = new List<string>();
        var skipped = new List<(string Snapshot, string Reason)>();
        var firstStarted = new TaskCompletionSource();
        var releaseFirst = new TaskCompletionSource();
        var (running, most) = (0, 0);
        var gate = new Lock();
        var queue = new MailIndexQueue(
            item => deleted.Contains(item.Snapshot) ? "it was deleted before its turn" : null,
            async (item, _) =>
            {
                lock (gate)
                {
                    ran.Add($"{item.Host}:{item.Snapshot}");
                    most = Math.Max(most, ++running);
                }

                try
                {
                    if (item.Snapshot == "mail@s1")
                    {
                        firstStarted.SetResult();
                        await releaseFirst.Task;
                    }

                    if (item.Snapshot == "mail@s3")
                    {
                        throw new InvalidOperationException("the agent failed");
                    }
                }
                finally
                {
                    lock (gate)
                    {
                        running--;
                    }
                }
            },
            RecordInto(skipped));

        queue.Enqueue(Item("app", "mail", "s1"));
        await firstStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));

        // While s1 builds: a burst on mail (s2 then s3: s2 is replaced), one of other, then a deletion.
        queue.Enqueue(Item("app", "mail", "s2"));
        queue.Enqueue(Item("app", "other", "t1"));
        queue.Enqueue(Item("app", "mail", "s3"));
        queue.Enqueue(Item("app", "gone", "g1"));
        deleted.Add("gone@g1");
        queue.Enqueue(Item("app", "after", "a1"));
        releaseFirst.SetResult();
        await queue.WhenIdleAsync().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(["app:mail@s1", "app:other@t1", "app:mail@s3", "app:after@a1"], ran);
        Assert.Equal(1, most);
        Assert.Equal(2, skipped.Count);
        Assert.Equal("mail@s2", skipped[0].Snapshot);
        Assert.Contains("newer snapshot of mail (mail@s3)", skipped[0].Reason, StringComparison.Ordinal);
        Assert.Equal(("gone@g1", "it was deleted before its turn"), skipped[1]);

        // The queue starts again after it drained; another host's builds do not wait for this one's.
        queue.Enqueue(Item("db", "mail", "s4"));
        queue.Enqueue(Item("app", "mail", "s4"));
        await queue.WhenIdleAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Contains("db:mail@s4", ran);
        Assert.Contains("app:mail@s4", ran);
    }

    [Fact]
    public async Task Stop_BuildRunningAndOthersWaiting_RunningCancelledAndAwaited_WaitingAndLaterSkipped()
    {
        var ran = new List<string>();
        var skipped = new List<(string Snapshot, string Reason)>();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = false;
        var queue = new MailIndexQueue(
            _ => null,
            async (item, stopping) =>
            {
                lock (ran)
                {
                    ran.Add(item.Snapshot);
                }

                started.TrySetResult();
                try
                {
                    await Task.Delay(Timeout.Infinite, stopping);
                }
                catch (OperationCanceledException)
                {
                    // As a build does: the agent is told, then the export and the view go.
                    await Task.Delay(100, CancellationToken.None);
                    cancelled = true;
                }
            },
            RecordInto(skipped));

        queue.Enqueue(Item("app", "mail", "s1"));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        queue.Enqueue(Item("app", "other", "t1"));

        await queue.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        queue.Enqueue(Item("app", "later", "l1"));

        Assert.True(cancelled, "the running build's token was not cancelled, or the stop did not wait for it");
        Assert.True(queue.Stopped);
        Assert.Contains(("other@t1", "the server stopped before its turn"), skipped);
        Assert.Contains(("later@l1", "the server stopped before its turn"), skipped);
        Assert.DoesNotContain("other@t1", ran);
        Assert.DoesNotContain("later@l1", ran);
    }

    /// <summary>The queue's skipped callback: records each item's snapshot and reason (called from the workers).</summary>
    private static Action<MailIndexItem, string> RecordInto(List<(string Snapshot, string Reason)> skipped) =>
        (item, reason) =>
        {
            lock (skipped)
            {
                skipped.Add((item.Snapshot, reason));
            }
        };

    private static MailIndexItem Item(string host, string volume, string snapshot) => new(host, volume, $"{volume}@{snapshot}", Guid.NewGuid(), "policy:p");
}
