namespace Tidemark.TestKit;

/// <summary>A connection phase that records what the protocol told its transport (a test stands in for the transport).</summary>
public sealed class RecordingPhase : IConnectionPhase
{
    private int _entered;
    private int _pollStops;

    /// <summary>Times <see cref="EnterDataPhaseAsync"/> was called.</summary>
    public int Entered => Volatile.Read(ref _entered);

    /// <summary>Times <see cref="StopReceivePoll"/> was called.</summary>
    public int PollStops => Volatile.Read(ref _pollStops);

    public ValueTask EnterDataPhaseAsync()
    {
        Interlocked.Increment(ref _entered);
        return ValueTask.CompletedTask;
    }

    public void StopReceivePoll() => Interlocked.Increment(ref _pollStops);
}
