using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

/// <summary>A memory device whose data-path calls fail with a chosen storage error while <see cref="Fault"/> is set.</summary>
internal sealed class FaultyBlockDevice(long sizeBytes) : IBlockDevice
{
    private readonly MemoryBlockDevice _inner = new(sizeBytes);

    public StorageError? Fault { get; set; }

    public Guid Id => _inner.Id;

    public string Name => "faulty";

    public long SizeBytes => _inner.SizeBytes;

    public int LogicalBlockSizeBytes => _inner.LogicalBlockSizeBytes;

    public int AllocationUnitBytes => _inner.AllocationUnitBytes;

    public bool IsReadOnly => false;

    public event EventHandler? SizeChanged
    {
        add => _inner.SizeChanged += value;
        remove => _inner.SizeChanged -= value;
    }

    public void Read(long offsetBytes, Span<byte> destination)
    {
        ThrowIfFaulted();
        _inner.Read(offsetBytes, destination);
    }

    /// <summary>The names of the threads that called <see cref="Write"/>.</summary>
    public System.Collections.Concurrent.ConcurrentBag<string?> WriterThreads { get; } = [];

    public void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        WriterThreads.Add(Thread.CurrentThread.Name);
        ThrowIfFaulted();
        _inner.Write(offsetBytes, source, forceUnitAccess);
    }

    public void Flush()
    {
        ThrowIfFaulted();
        _inner.Flush();
    }

    public void Unmap(long offsetBytes, long lengthBytes)
    {
        ThrowIfFaulted();
        _inner.Unmap(offsetBytes, lengthBytes);
    }

    public void WriteZeroes(long offsetBytes, long lengthBytes, bool mayUnmap)
    {
        ThrowIfFaulted();
        _inner.WriteZeroes(offsetBytes, lengthBytes, mayUnmap);
    }

    public int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess)
    {
        ThrowIfFaulted();
        return _inner.CompareAndWrite(offsetBytes, expected, replacement, forceUnitAccess);
    }

    public int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination)
    {
        ThrowIfFaulted();
        return _inner.GetAllocationStatus(offsetBytes, lengthBytes, destination);
    }

    private void ThrowIfFaulted()
    {
        if (Fault is { } error)
        {
            throw new StorageException(error, $"injected {error}");
        }
    }
}
