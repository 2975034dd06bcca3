namespace Tidemark;

/// <summary>
/// Stable error codes of the storage layer. Frontends map them to SCSI sense data or NBD errors,
/// the REST API to problem-details codes. Values are persisted in logs and the API: never renumber.
/// </summary>
public enum StorageError
{
    InvalidArgument = 1,
    OutOfRange = 2,
    Misaligned = 3,
    ReadOnly = 4,
    NoSpace = 5,
    NotFound = 6,
    AlreadyExists = 7,
    InvalidName = 8,
    HasDependents = 9,
    Held = 10,
    Corrupt = 11,
    IoError = 12,
    Closed = 13,
    Unsupported = 14,
    Busy = 15,

    /// <summary>A remote party (a replication partner) cannot be reached or did not answer.</summary>
    Unavailable = 16,
}

/// <summary>A typed, actionable storage error: the message says what happened and what to do.</summary>
public class StorageException : Exception
{
    public StorageException(StorageError error, string message)
        : base(message)
    {
        Error = error;
    }

    public StorageException(StorageError error, string message, Exception inner)
        : base(message, inner)
    {
        Error = error;
    }

    public StorageException()
        : this(StorageError.IoError, "storage error")
    {
    }

    public StorageException(string message)
        : this(StorageError.IoError, message)
    {
    }

    public StorageException(string message, Exception innerException)
        : this(StorageError.IoError, message, innerException)
    {
    }

    public StorageError Error { get; }
}
