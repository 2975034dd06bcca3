using System.Diagnostics.CodeAnalysis;

namespace Tidemark.Protocols.Nbd;

/// <summary>
/// The peer broke a mandatory rule of proto.md (bad magic, a length beyond our caps, unknown client
/// flags). proto.md "Termination of the session": either side MAY initiate a hard disconnect on such a
/// violation; <see cref="NbdConnection"/> catches this, ends only that connection and reports why.
/// </summary>
public sealed class NbdProtocolViolationException : Exception
{
    public NbdProtocolViolationException()
        : base("NBD protocol violation")
    {
    }

    public NbdProtocolViolationException(string message)
        : base(message)
    {
    }

    public NbdProtocolViolationException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    [DoesNotReturn]
    internal static void Throw(string message) => throw new NbdProtocolViolationException(message);
}
