namespace Tidemark.Engine;

/// <summary>
/// Format versions of everything the engine persists. When each must be bumped, and what an older
/// or newer build does with a pool: docs/adr/0011-control-plane-state.md, "Format versions".
/// </summary>
public static class EngineInfo
{
    /// <summary>
    /// The pool format this build writes. 1: the first layout. 2: map pages may carry merge operands
    /// (<c>tidemark.map-page-delta.v1</c>), which a build without the operator reads as if the page
    /// ended at its first operand, and the pool may hold control-plane records (key tag 'X').
    /// </summary>
    public const int PoolFormatVersion = 2;

    /// <summary>The oldest pool format this build opens; older pools are upgraded to <see cref="PoolFormatVersion"/> on open.</summary>
    public const int OldestPoolFormatVersion = 1;

    /// <summary>
    /// Layout of the 4 KiB header at the start of every backing store (magic, version, pool id,
    /// store index, checksum). Separate from the pool format: the header has not changed with it.
    /// </summary>
    public const int StoreHeaderVersion = 1;
}
