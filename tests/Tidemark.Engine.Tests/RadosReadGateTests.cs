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
}
