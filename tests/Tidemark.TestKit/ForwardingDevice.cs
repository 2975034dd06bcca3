namespace Tidemark.TestKit;

/// <summary>Passes every call to an inner device; tests override the calls they interfere with.</summary>
public class ForwardingDevice(IBlockDevice inner) : IBlockDevice
{
    protected IBlockDevice Inner => inner;

    public Guid Id => inner.Id;

    public string Name => inner.Name;

    public long SizeBytes => inner.SizeBytes;

    public int LogicalBlockSizeBytes => inner.LogicalBlockSizeBytes;

    public int AllocationUnitBytes => inner.AllocationUnitBytes;

    public bool IsReadOnly => inner.IsReadOnly;

    public virtual int PreferredConcurrency => inner.PreferredConcurrency;

    public event EventHandler? SizeChanged
    {
        add => inner.SizeChanged += value;
        remove => inner.SizeChanged -= value;
    }

    public virtual void Read(long offsetBytes, Span<byte> destination) => inner.Read(offsetBytes, destination);

    public virtual void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess) => inner.Write(offsetBytes, source, forceUnitAccess);

    public virtual void Flush() => inner.Flush();

    public virtual void Unmap(long offsetBytes, long lengthBytes) => inner.Unmap(offsetBytes, lengthBytes);

    public virtual void WriteZeroes(long offsetBytes, long lengthBytes, bool mayUnmap) => inner.WriteZeroes(offsetBytes, lengthBytes, mayUnmap);

    public virtual int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess) =>
        inner.CompareAndWrite(offsetBytes, expected, replacement, forceUnitAccess);

    public virtual int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination) =>
        inner.GetAllocationStatus(offsetBytes, lengthBytes, destination);
}
