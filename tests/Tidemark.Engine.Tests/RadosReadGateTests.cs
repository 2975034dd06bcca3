using Tidemark.Engine.Storage;

namespace Tidemark.Engine.Tests;

/// <summary>The bound on a RADOS store's reads in flight: needs no cluster.</summary>
public class RadosReadGateTests
{
    [Fact]
    public async Task Enter_PastTheBound_WaitsUntilRoomIsGiven()
    {
        var gate = new RadosReadGate();
        gate.Enter(RadosReadGate.MaxReads - 1, 4096);
        var second = Task.Run(() => gate.Enter(2, 4096));

        // Only a broken gate lets it through; a correct one never completes it before Exit.
        await Task.Delay(200);
        Assert.False(second.IsCompleted);

        gate.Exit(RadosReadGate.MaxReads - 1, 4096);
        await second.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(RadosReadGate.MaxReads - 1, gate.PeakReads);
        gate.Exit(2, 4096);
    }

    [Fact]
    public async Task Enter_LargerThanTheByteBound_GoesAloneAndHoldsOthersBack()
    {
        var gate = new RadosReadGate();
        gate.Enter(1, RadosReadGate.MaxBytes * 2); // nothing else in flight: it goes
        var small = Task.Run(() => gate.Enter(1, 4096));
        await Task.Delay(200);
        Assert.False(small.IsCompleted);

        gate.Exit(1, RadosReadGate.MaxBytes * 2);
        await small.WaitAsync(TimeSpan.FromSeconds(30));
        gate.Exit(1, 4096);
    }

    [Fact]
    public async Task TryEnterOrQueue_PastTheBound_QueuedFirstComeFirstServedAndStartedOnThePoolByTheExit()
    {
        var gate = new RadosReadGate();
        var first = new Waiter(RadosReadGate.MaxReads - 1, 4096);
        Assert.True(gate.TryEnterOrQueue(first));
        Assert.False(first.Ran.Task.IsCompleted); // admitted at once: the caller starts it, not the pool

        var second = new Waiter(2, 4096);
        var third = new Waiter(1, 4096); // would fit, but waits behind the second
        Assert.False(gate.TryEnterOrQueue(second));
        Assert.False(gate.TryEnterOrQueue(third));
        Assert.Equal(2, gate.Waiting);
        var syncExitThread = Environment.CurrentManagedThreadId;

        gate.Exit(first.Pieces, first.Bytes);
        var ranOn = await second.Ran.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await third.Ran.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.NotEqual(syncExitThread, ranOn); // never on the thread that exits (librados's)
        Assert.Equal(0, gate.Waiting);

        gate.Exit(second.Pieces, second.Bytes);
        gate.Exit(third.Pieces, third.Bytes);
        await Task.Run(gate.WaitForNone).WaitAsync(TimeSpan.FromSeconds(30));
    }

    private sealed class Waiter(int pieces, long bytes) : IReadGateWaiter
    {
        public TaskCompletionSource<int> Ran { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Pieces => pieces;

        public long Bytes => bytes;

        public void Execute() => Ran.SetResult(Environment.CurrentManagedThreadId);
    }
}
