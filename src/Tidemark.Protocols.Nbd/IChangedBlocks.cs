namespace Tidemark.Protocols.Nbd;

/// <summary>
/// What an export can say about change: for each older snapshot it names, the ranges that differ
/// between that snapshot and the exported image (sorted, not overlapping). Served as the metadata
/// context <c>tidemark:changed:BASE</c> (in the spirit of QEMU's <c>qemu:dirty-bitmap:NAME</c>), so a
/// backup tool reads an incremental backup over plain NBD; it comes from the engine's diff, so it
/// survives crashes and restarts.
/// </summary>
public interface IChangedBlocks
{
    /// <summary>Names of the snapshots a client may ask for changes since (for LIST_META_CONTEXT).</summary>
    IReadOnlyList<string> Bases { get; }

    /// <summary>The changed ranges since <paramref name="baseName"/>, or null when there is no such snapshot.</summary>
    IReadOnlyList<(long OffsetBytes, long LengthBytes)>? ChangesSince(string baseName);
}
