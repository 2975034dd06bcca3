namespace Tidemark.Engine;

/// <summary>
/// The data of a whole-block write: in memory, or waiting in a kernel pipe. A pipe is consumed in
/// order, so writers take ranges of a source front to back, each exactly once.
/// </summary>
internal readonly ref struct BlockSource
{
    private readonly ReadOnlySpan<byte> _memory;
    private readonly KernelPipe? _pipe;

    public BlockSource(ReadOnlySpan<byte> memory)
    {
        _memory = memory;
        LengthBytes = memory.Length;
    }

    public BlockSource(KernelPipe pipe, int lengthBytes)
    {
        _pipe = pipe;
        LengthBytes = lengthBytes;
    }

    public int LengthBytes { get; }

    /// <summary>Writes [<paramref name="offsetBytes"/>, +<paramref name="lengthBytes"/>) of the source at <paramref name="phys"/>.</summary>
    public void WriteTo(Pool pool, ulong phys, int offsetBytes, int lengthBytes)
    {
        if (_pipe is null)
        {
            pool.WritePhys(phys, _memory.Slice(offsetBytes, lengthBytes));
        }
        else
        {
            pool.WritePhysFromPipe(phys, _pipe, lengthBytes);
        }
    }
}
