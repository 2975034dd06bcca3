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
}
