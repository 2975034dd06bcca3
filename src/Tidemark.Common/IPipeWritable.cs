namespace Tidemark;

/// <summary>
/// A device that can take a write's payload straight out of a <see cref="KernelPipe"/> (splice), so a
/// frontend that moved it there from its socket never copies it through user memory. Only whole
/// allocation units: offset and length are multiples of <see cref="IBlockDevice.AllocationUnitBytes"/>.
/// </summary>
public interface IPipeWritable
{
    /// <summary>False where the device cannot (a read-only device, a store without splice); callers then use <see cref="IBlockDevice.Write"/>.</summary>
    bool CanWriteFromPipe { get; }

    /// <summary>
    /// Writes the next <paramref name="lengthBytes"/> bytes waiting in <paramref name="pipe"/> at
    /// <paramref name="offsetBytes"/>, like <see cref="IBlockDevice.Write"/> (same errors). On failure
    /// part of the payload may still be in the pipe; the caller discards it.
    /// </summary>
    void WriteFromPipe(long offsetBytes, int lengthBytes, KernelPipe pipe, bool forceUnitAccess);
}
