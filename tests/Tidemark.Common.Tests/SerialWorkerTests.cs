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

    [Fact]
    public async Task Stop_WhileItemsArePending_RunsThemAll_AndReturnsOnlyWhenTheThreadEnded()
    {
        var ran = new List<int>();
        var started = new ManualResetEventSlim();
        var gate = new ManualResetEventSlim();
        Thread? workerThread = null;
        var worker = new SerialWorker<int>("test worker", i =>
        {
            workerThread = Thread.CurrentThread;
            started.Set();
            gate.Wait();
            lock (ran)
            {
                ran.Add(i);
            }
        });
        for (var i = 0; i < 10; i++)
        {
            Assert.True(worker.Enqueue(i));
        }

        started.Wait(TimeSpan.FromSeconds(10));
        var stopping = Task.Run(worker.Stop);
        // Items queued before Stop took effect are taken and run too; from then on none is.
        var accepted = 0;
        SpinWait.SpinUntil(
            () =>
            {
                if (worker.Enqueue(99))
                {
                    accepted++;
                    return false;
                }

                return true;
            },
            TimeSpan.FromSeconds(10));
        Assert.False(stopping.IsCompleted); // the first item still blocks: Stop waits for it
        gate.Set();
        await stopping.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(Enumerable.Range(0, 10).Concat(Enumerable.Repeat(99, accepted)), ran);
        Assert.False(workerThread!.IsAlive);
        Assert.Null(worker.Fault);
    }

    [Fact]
    public async Task AnItemThatThrows_StopsTheWorker_RunsWhatWasQueuedBehindIt_AndKeepsTheFault()
    {
        var ran = new List<int>();
        var gate = new ManualResetEventSlim();
        var worker = new SerialWorker<int>("test worker", i =>
        {
            gate.Wait();
            lock (ran)
            {
                ran.Add(i);
            }

            if (i == 1)
            {
                throw new InvalidOperationException("item 1 failed");
            }
        });
        for (var i = 0; i < 4; i++)
        {
            worker.Enqueue(i);
        }

        gate.Set();
        worker.WaitIdle();
        Assert.Equal([0, 1, 2, 3], ran); // the items behind the fault still ran (they give back what they hold)
        Assert.Equal("item 1 failed", Assert.IsType<InvalidOperationException>(worker.Fault).Message);
        Assert.False(worker.Enqueue(4)); // faulted: nothing new is taken
        await Task.Run(worker.Stop).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([0, 1, 2, 3], ran);
    }

    [Fact]
    public async Task AnAsyncItemThatFaultsLater_StopsTheWorker_AndStopReturns()
    {
        var pending = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ran = 0;
        var worker = new SerialWorker<int>("test worker", i =>
        {
            Interlocked.Increment(ref ran);
            return i == 0 ? new ValueTask(pending.Task) : ValueTask.CompletedTask;
        });
        worker.Enqueue(0);
        worker.Enqueue(1);
        pending.SetException(new IOException("flush failed"));
        worker.WaitIdle();
        Assert.IsType<IOException>(worker.Fault);
        Assert.Equal(2, ran);
        Assert.False(worker.Enqueue(2));
        await Task.Run(worker.Stop).WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Stop_FromAnItemOnTheWorkersOwnThread_DoesNotWaitForItself_AndTheQueueStillDrains()
    {
        // The reply sender stops its own worker when the peer is gone; a join on itself would hang.
        var ran = new List<int>();
        SerialWorker<int>? worker = null;
        var gate = new ManualResetEventSlim();
        worker = new SerialWorker<int>("test worker", i =>
        {
            if (i == -1)
            {
                gate.Wait();
            }

            if (i == 0)
            {
                worker!.Stop();
            }

            lock (ran)
            {
                ran.Add(i);
            }
        });
        worker.Enqueue(-1); // holds the worker until the rest is queued
        Assert.True(worker.Enqueue(0));
        Assert.True(worker.Enqueue(1));
        gate.Set();
        worker.WaitIdle();
        Assert.Equal([-1, 0, 1], ran);
        Assert.False(worker.Enqueue(2));
        await Task.Run(worker.Stop).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Null(worker.Fault);
    }
}
