namespace Tidemark.Common.Tests;

public sealed class SerialWorkerTests
{
    [Fact]
    public void Items_RunInOrder_OnTheWorkersThread_AndDrainedFollowsTheLastWhenAskedFor()
    {
        var log = new List<string>();
        var gate = new ManualResetEventSlim();
        var worker = new SerialWorker<int>("test worker", i =>
        {
            gate.Wait();
            log.Add($"{i}:{Thread.CurrentThread.Name}");
        }, () => log.Add("drained"));
        for (var i = 0; i < 100; i++)
        {
            worker.Enqueue(i);
        }

        Assert.True(worker.CallDrainedOrIdle()); // busy: the worker will call drained
        gate.Set();
        worker.WaitIdle();
        Assert.True(worker.IsIdle);
        Assert.Equal(Enumerable.Range(0, 100).Select(i => $"{i}:test worker").Append("drained"), log);
        worker.Stop();
    }

    [Fact]
    public void AsyncItems_ThatCompleteLater_KeepTheOrder_AndTheWorkerBusyUntilTheyComplete()
    {
        // An item that does not complete at once (a flush through TLS) parks the worker: the next
        // item starts only after its completion, which comes from another thread, and drained follows.
        var log = new List<string>();
        var pending = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var drainedPending = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var worker = new SerialWorker<int>(
            "test worker",
            i =>
            {
                lock (log)
                {
                    log.Add($"start {i}");
                }

                return i == 1 ? new ValueTask(pending.Task) : ValueTask.CompletedTask;
            },
            () =>
            {
                lock (log)
                {
                    log.Add("drained");
                }

                return new ValueTask(drainedPending.Task);
            });
        worker.Enqueue(1);
        worker.Enqueue(2);
        Assert.True(worker.CallDrainedOrIdle());
        SpinWait.SpinUntil(() => { lock (log) { return log.Count > 0; } }, TimeSpan.FromSeconds(10));

        Thread.Sleep(100); // room for a wrong worker to start item 2 before item 1 completed
        lock (log)
        {
            Assert.Equal(["start 1"], log);
        }

        Assert.False(worker.IsIdle);
        pending.SetResult();
        SpinWait.SpinUntil(() => { lock (log) { return log.Count == 3; } }, TimeSpan.FromSeconds(10));
        Assert.False(worker.IsIdle); // drained has not completed
        drainedPending.SetResult();
        worker.WaitIdle();
        Assert.Equal(["start 1", "start 2", "drained"], log);
        worker.Stop();
    }

    [Fact]
    public void CallDrainedOrIdle_WhenIdle_IsFalse_AndDrainedIsNotCalled()
    {
        var drained = 0;
        var worker = new SerialWorker<int>("test worker", _ => { }, () => drained++);
        worker.Enqueue(1);
        worker.WaitIdle();
        Assert.False(worker.CallDrainedOrIdle());
        worker.Enqueue(2);
        worker.WaitIdle();
        worker.Stop();
        Assert.Equal(0, drained);
    }

    [Fact]
    public async Task Stop_RunsWhatIsQueued_ThenRefusesMore()
    {
        var ran = 0;
        var gate = new ManualResetEventSlim();
        var worker = new SerialWorker<int>("test worker", _ =>
        {
            gate.Wait();
            Interlocked.Increment(ref ran);
        });
        for (var i = 0; i < 5; i++)
        {
            worker.Enqueue(i);
        }

        var stopping = Task.Run(worker.Stop);
        gate.Set();
        await stopping.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(5, ran);
        Assert.False(worker.Enqueue(6));
        worker.Stop(); // again: nothing to do
    }

    [Fact]
    public void WaitFor_ReturnsOnceTheConditionHolds_WhileItemsAreStillQueued()
    {
        var done = 0;
        var release = new SemaphoreSlim(0);
        var worker = new SerialWorker<int>("test worker", _ =>
        {
            release.Wait();
            Interlocked.Increment(ref done);
        });
        for (var i = 0; i < 4; i++)
        {
            worker.Enqueue(i);
        }

        release.Release(2);
        worker.WaitFor(() => Volatile.Read(ref done) >= 2);
        Assert.True(Volatile.Read(ref done) >= 2);
        Assert.False(worker.IsIdle);
        release.Release(2);
        worker.WaitIdle();
        Assert.Equal(4, done);
        worker.Stop();
    }
}
