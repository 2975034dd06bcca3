namespace Tidemark;

/// <summary>
/// What a protocol connection tells its transport about its phases. A connection starts in its
/// negotiation phase (NBD handshake and options, iSCSI login), which a hostile or careless client
/// can hold open cheaply; the transport keeps such a connection cheap (no thread of its own) and
/// bounded by a deadline. Once the protocol reaches its data phase (NBD transmission, iSCSI full
/// feature phase) the transport gives it what the data path needs.
/// </summary>
public interface IConnectionPhase
{
    /// <summary>
    /// Called once, when negotiation succeeded and before the first data-phase request is read. The
    /// code after the await may run on another thread (one the transport dedicates to the connection).
    /// </summary>
    ValueTask EnterDataPhaseAsync();

    /// <summary>
    /// Tells the transport, in the data phase and on the connection's thread, that the connection's
    /// device answers in hundreds of microseconds (a network round trip: a RADOS-backed volume, whose
    /// <see cref="IBlockDevice.PreferredConcurrency"/> is above 1). A transport that spins for a while
    /// before a receive that finds no bytes sleeps (the receive poll: the next request of a client at
    /// queue depth 1 finds the thread awake when the answer took microseconds) stops spinning for the
    /// rest of the connection: the next request cannot come before the device answered, so the spin
    /// only takes a core from the threads doing the device's work (ADR 0021, "Update (session 22)").
    /// </summary>
    void StopReceivePoll()
    {
    }
}
