using Tidemark.Server.Agents;

namespace Tidemark.Server.Tests;

/// <summary>
/// The post-snapshot mail index queue (docs/adr/0012, "Index after a snapshot"): one build at a time
/// per host, a burst of snapshots of a volume indexes only the newest, a snapshot deleted before its
/// turn is skipped, and a failing build does not stop the queue.
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
            async item =>
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
            (item, reason) =>
            {
                lock (gate)
                {
                    skipped.Add((item.Snapshot, reason));
                }
            });

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

    private static MailIndexItem Item(string host, string volume, string snapshot) => new(host, volume, $"{volume}@{snapshot}", Guid.NewGuid(), "policy:p");
}
