using System.Diagnostics.CodeAnalysis;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// The initiator broke RFC 7143: the connection answers with a Reject (when one can be framed)
/// and is closed; other connections are unaffected (CONVENTIONS.md habit 7).
/// </summary>
public sealed class IscsiProtocolException : Exception
{
    public IscsiProtocolException(RejectReason reason, string message)
        : base(message)
    {
        Reason = reason;
    }

    public IscsiProtocolException()
        : this(RejectReason.ProtocolError, "iSCSI protocol violation")
    {
    }

    public IscsiProtocolException(string message)
        : this(RejectReason.ProtocolError, message)
    {
    }

    public IscsiProtocolException(string message, Exception innerException)
        : base(message, innerException)
    {
        Reason = RejectReason.ProtocolError;
    }

    public RejectReason Reason { get; }

    [DoesNotReturn]
    public static void Throw(RejectReason reason, string message) => throw new IscsiProtocolException(reason, message);
}
