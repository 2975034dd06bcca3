namespace Tidemark.Protocols.Nbd;

/// <summary>Why <see cref="NbdConnection.RunAsync"/> returned; the host logs it.</summary>
public enum NbdSessionEndReason
{
    /// <summary>The peer closed the transport (between messages).</summary>
    PeerClosed = 0,

    /// <summary>NBD_OPT_ABORT during the handshake (proto.md soft disconnect).</summary>
    ClientAborted = 1,

    /// <summary>NBD_CMD_DISC during transmission (proto.md soft disconnect).</summary>
    ClientDisconnected = 2,

    /// <summary>The peer broke the protocol; the message says how.</summary>
    ProtocolViolation = 3,

    /// <summary>NBD_OPT_EXPORT_NAME named an unknown export: proto.md says the server MUST terminate.</summary>
    UnknownExport = 4,

    /// <summary>The peer closed the transport in the middle of a message.</summary>
    TruncatedFrame = 5,

    /// <summary><see cref="NbdConnection.Abort"/> or the cancellation token ended the session.</summary>
    Aborted = 6,

    /// <summary>The transport failed (connection reset, I/O error).</summary>
    TransportError = 7,
}

/// <summary>The outcome of a session: a reason and, for violations and errors, a message.</summary>
public readonly record struct NbdSessionEnd(NbdSessionEndReason Reason, string? Message = null);
