namespace Tidemark.Engine;

/// <summary>
/// The data of a whole-block write. Payloads reach the engine as memory only: the frontends' transport
/// decides how a payload leaves the socket, and hands the engine a span (docs/adr/0010).
/// </summary>
internal readonly ref struct BlockSource
{
    private readonly ReadOnlySpan<byte> _memory;

    public BlockSource(ReadOnlySpan<byte> memory)
    {
        _memory = memory;
        LengthBytes = memory.Length;
    }

    public int LengthBytes { get; }

    /// <summary>Writes [<paramref name="offsetBytes"/>, +<paramref name="lengthBytes"/>) of the source at <paramref name="phys"/>.</summary>
    public void WriteTo(Pool pool, ulong phys, int offsetBytes, int lengthBytes, bool fresh) =>
        pool.WritePhys(phys, _memory.Slice(offsetBytes, lengthBytes), fresh);
}
