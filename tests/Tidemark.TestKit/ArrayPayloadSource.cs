namespace Tidemark.TestKit;

/// <summary>A payload source over an array, for tests of what a device or a unit does with a source (no transport behind it).</summary>
public sealed class ArrayPayloadSource(byte[] data) : IPayloadSource
{
    private int _taken;

    public int RemainingBytes => data.Length - _taken;

    public void Fill(Span<byte> destination)
    {
        data.AsSpan(_taken, destination.Length).CopyTo(destination);
        _taken += destination.Length;
    }
}
