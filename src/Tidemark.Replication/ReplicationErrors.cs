namespace Tidemark.Replication;

// Refusals a caller must tell apart from other storage errors (to stop retrying, to record them at
// both ends, to offer a fail-back's rollback): each its own type, not a key in Exception.Data. Each
// keeps its StorageError, so the API answers them exactly as before.

/// <summary>The partner decided (a 4xx answer, a TLS handshake of an unpaired server): another attempt gets the same answer.</summary>
public sealed class PartnerRefusedException : StorageException
{
    public PartnerRefusedException(string message)
        : base(StorageError.Unavailable, message)
    {
    }

    public PartnerRefusedException(string message, Exception innerException)
        : base(StorageError.Unavailable, message, innerException)
    {
    }

    public PartnerRefusedException()
        : this("the partner refused")
    {
    }
}

/// <summary>A stream, scan or demotion from a role generation older than this site's (ADR 0005): refused.</summary>
public sealed class StaleGenerationException : StorageException
{
    public StaleGenerationException(string message)
        : base(StorageError.ReadOnly, message)
    {
    }

    public StaleGenerationException(string message, Exception innerException)
        : base(StorageError.ReadOnly, message, innerException)
    {
    }

    public StaleGenerationException()
        : this("stale role generation")
    {
    }
}

/// <summary>A fail-back refused because both sites wrote after the snapshot they last shared.</summary>
public sealed class SplitBrainException : StorageException
{
    public SplitBrainException(string message)
        : base(StorageError.InvalidArgument, message)
    {
    }

    public SplitBrainException(string message, Exception innerException)
        : base(StorageError.InvalidArgument, message, innerException)
    {
    }

    public SplitBrainException()
        : this("split brain")
    {
    }
}

/// <summary>An incremental stream's target was written after the stream's base snapshot (<see cref="BaseSnapshot"/>).</summary>
public sealed class BaseChangedException : StorageException
{
    public BaseChangedException(string message, string baseSnapshot)
        : base(StorageError.InvalidArgument, message)
    {
        BaseSnapshot = baseSnapshot;
    }

    public BaseChangedException(string message)
        : base(StorageError.InvalidArgument, message)
    {
    }

    public BaseChangedException(string message, Exception innerException)
        : base(StorageError.InvalidArgument, message, innerException)
    {
    }

    public BaseChangedException()
        : this("the target changed since the stream's base snapshot")
    {
    }

    /// <summary>The address of the base snapshot the target changed since.</summary>
    public string? BaseSnapshot { get; }
}
