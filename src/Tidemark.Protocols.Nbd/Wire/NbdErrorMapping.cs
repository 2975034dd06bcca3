namespace Tidemark.Protocols.Nbd.Wire;

/// <summary>Maps storage errors to the restricted set of proto.md "Error values".</summary>
public static class NbdErrorMapping
{
    public static NbdError FromStorageError(StorageError error) => error switch
    {
        StorageError.OutOfRange or StorageError.InvalidArgument or StorageError.Misaligned => NbdError.InvalidArgument,
        StorageError.ReadOnly => NbdError.NotPermitted,
        StorageError.NoSpace => NbdError.NoSpace,

        // proto.md: "Which error to return in any other case is not specified"; EIO tells the
        // client the data is not there without implying a client mistake.
        _ => NbdError.IoError,
    };
}
