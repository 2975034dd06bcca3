namespace Tidemark.Engine;

/// <summary>Names of volumes, views, snapshots and groups: what the CLI, URLs and IQNs can carry.</summary>
public static class Names
{
    public const int MaxLength = 64;

    public static bool IsValid(string? name) =>
        !string.IsNullOrEmpty(name)
        && name.Length <= MaxLength
        && char.IsAsciiLetterOrDigit(name[0])
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    public static void Check(string what, string? name)
    {
        if (!IsValid(name))
        {
            throw new StorageException(
                StorageError.InvalidName,
                $"'{name}' is not a valid {what} name: use 1-{MaxLength} letters, digits, '-', '_' or '.', starting with a letter or digit");
        }
    }

    /// <summary>Splits "volume@snapshot".</summary>
    public static (string Volume, string Snapshot) SplitSnapshot(string address)
    {
        var at = address.IndexOf('@', StringComparison.Ordinal);
        if (at <= 0 || at == address.Length - 1)
        {
            throw new StorageException(StorageError.InvalidName, $"'{address}' is not a snapshot address; write it as VOLUME@SNAPSHOT");
        }

        return (address[..at], address[(at + 1)..]);
    }
}
