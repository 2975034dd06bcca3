namespace Tidemark.Recovery;

/// <summary>What kind of failure a recovery step met; the CLI maps it to its exit code (README).</summary>
public enum RecoveryFailure
{
    /// <summary>What the operator asked for or the local setup is wrong (exit 2).</summary>
    BadInput,

    /// <summary>A server (Tidemark or IMAP) understood and refused (exit 1).</summary>
    Refused,

    /// <summary>A server could not be reached (exit 3).</summary>
    Unreachable,
}

/// <summary>A recovery step failed; the message says what to do about it.</summary>
public sealed class RecoveryException : Exception
{
    public RecoveryException(RecoveryFailure failure, string message, Exception? inner = null)
        : base(message, inner)
    {
        Failure = failure;
    }

    public RecoveryException()
    {
    }

    public RecoveryException(string message)
        : base(message)
    {
    }

    public RecoveryException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public RecoveryFailure Failure { get; } = RecoveryFailure.BadInput;
}
