namespace Tidemark.TestKit;

/// <summary>
/// An inner device that says it serves <paramref name="preferredConcurrency"/> operations at once
/// (<see cref="IBlockDevice.PreferredConcurrency"/>): above 1 it stands for a RADOS-backed volume, whose
/// answers are network round trips, wherever a protocol decides by that.
/// </summary>
public sealed class ConcurrencyDevice(IBlockDevice inner, int preferredConcurrency) : ForwardingDevice(inner)
{
    public override int PreferredConcurrency => preferredConcurrency;
}
