namespace Tidemark.Engine;

/// <summary>
/// The data of a whole-block write: memory, or a payload source the store pulls from itself
/// (<see cref="IPayloadSource"/>: the transport moves the bytes, the engine sees no socket or pipe,
/// docs/adr/0010). A source is consumed once, front to back, so writers take the ranges of a
/// <see cref="BlockSource"/> in order, each exactly once (Lineage.WriteBlocks allocates before it
/// writes and writes front to back).
/// </summary>
internal readonly ref struct BlockSource
{
    private readonly ReadOnlySpan<byte> _memory;
    private readonly IPayloadSource? _source;

    public BlockSource(ReadOnlySpan<byte> memory)
    {
        _memory = memory;
        LengthBytes = memory.Length;
    }

    public BlockSource(IPayloadSource source, int lengthBytes)
    {
        _source = source;
        LengthBytes = lengthBytes;
    }

    public int LengthBytes { get; }

    /// <summary>Writes [<paramref name="offsetBytes"/>, +<paramref name="lengthBytes"/>) of the source at <paramref name="phys"/>.</summary>
    public void WriteTo(Pool pool, ulong phys, int offsetBytes, int lengthBytes, bool fresh)
    {
        if (_source is null)
        {
            pool.WritePhys(phys, _memory.Slice(offsetBytes, lengthBytes), fresh);
        }
        else
        {
            pool.WritePhysFrom(phys, _source, lengthBytes, fresh);
        }
    }
}
