using System.Diagnostics;

namespace Tidemark.Server.Metrics;

/// <summary>Counts every request to the device it wraps into a <see cref="DeviceStats"/>; behaviour is the inner device's.</summary>
public sealed class MeteredBlockDevice : IBlockDevice
{
    private readonly IBlockDevice _inner;
    private readonly DeviceStats _stats;

    public MeteredBlockDevice(IBlockDevice inner, DeviceStats stats)
    {
        _inner = inner;
        _stats = stats;
    }

    public IBlockDevice Inner => _inner;

    public Guid Id => _inner.Id;

    public string Name => _inner.Name;

    public long SizeBytes => _inner.SizeBytes;

    public int LogicalBlockSizeBytes => _inner.LogicalBlockSizeBytes;

    public int AllocationUnitBytes => _inner.AllocationUnitBytes;

    public bool IsReadOnly => _inner.IsReadOnly;

    public event EventHandler? SizeChanged
    {
        add => _inner.SizeChanged += value;
        remove => _inner.SizeChanged -= value;
    }

    public void Read(long offsetBytes, Span<byte> destination)
    {
        var start = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            _inner.Read(offsetBytes, destination);
            failed = false;
        }
        finally
        {
            _stats[IoOperation.Read].Record(destination.Length, Stopwatch.GetTimestamp() - start, failed);
        }
    }

    public void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        var start = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            _inner.Write(offsetBytes, source, forceUnitAccess);
            failed = false;
        }
        catch (StorageException ex) when (ex.Error == StorageError.NoSpace)
        {
            _stats.CountNoSpace();
            throw;
        }
        finally
        {
            _stats[IoOperation.Write].Record(source.Length, Stopwatch.GetTimestamp() - start, failed);
        }
    }

    public int MaxAtomicWriteBytes => _inner.MaxAtomicWriteBytes;

    public int PreferredConcurrency => _inner.PreferredConcurrency;

    /// <summary>Forwarded, so the inner device's asynchronous read is the one used; counted when it ended.</summary>
    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        var start = Stopwatch.GetTimestamp();
        ValueTask pending;
        try
        {
            pending = _inner.ReadAsync(offsetBytes, destination, cancellationToken);
        }
        catch (Exception ex)
        {
            pending = ValueTask.FromException(ex);
        }

        return Completion.Then(pending, (Stats: _stats, Start: start, Bytes: destination.Length), static (read, error) =>
            read.Stats[IoOperation.Read].Record(read.Bytes, Stopwatch.GetTimestamp() - read.Start, error is not null));
    }

    public bool SoftwareWriteProtected
    {
        get => _inner.SoftwareWriteProtected;
        set => _inner.SoftwareWriteProtected = value;
    }

    public void WriteAtomic(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        var start = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            _inner.WriteAtomic(offsetBytes, source, forceUnitAccess);
            failed = false;
        }
        catch (StorageException ex) when (ex.Error == StorageError.NoSpace)
        {
            _stats.CountNoSpace();
            throw;
        }
        finally
        {
            _stats[IoOperation.Write].Record(source.Length, Stopwatch.GetTimestamp() - start, failed);
        }
    }

    public void Flush()
    {
        var start = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            _inner.Flush();
            failed = false;
        }
        finally
        {
            _stats[IoOperation.Flush].Record(0, Stopwatch.GetTimestamp() - start, failed);
        }
    }

    public void Unmap(long offsetBytes, long lengthBytes)
    {
        var start = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            _inner.Unmap(offsetBytes, lengthBytes);
            failed = false;
        }
        finally
        {
            _stats[IoOperation.Unmap].Record(lengthBytes, Stopwatch.GetTimestamp() - start, failed);
        }
    }

    public void WriteZeroes(long offsetBytes, long lengthBytes, bool mayUnmap)
    {
        var start = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            _inner.WriteZeroes(offsetBytes, lengthBytes, mayUnmap);
            failed = false;
        }
        catch (StorageException ex) when (ex.Error == StorageError.NoSpace)
        {
            _stats.CountNoSpace();
            throw;
        }
        finally
        {
            _stats[IoOperation.WriteZeroes].Record(lengthBytes, Stopwatch.GetTimestamp() - start, failed);
        }
    }

    public int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess)
    {
        var start = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            var result = _inner.CompareAndWrite(offsetBytes, expected, replacement, forceUnitAccess);
            failed = false;
            return result;
        }
        catch (StorageException ex) when (ex.Error == StorageError.NoSpace)
        {
            _stats.CountNoSpace();
            throw;
        }
        finally
        {
            _stats[IoOperation.CompareAndWrite].Record(replacement.Length, Stopwatch.GetTimestamp() - start, failed);
        }
    }

    public int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination) =>
        _inner.GetAllocationStatus(offsetBytes, lengthBytes, destination);

    /// <summary>Forwarded, so the volume's store can take the payload from its source (no copy through memory here); counted as a write.</summary>
    public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
    {
        var start = Stopwatch.GetTimestamp();
        var failed = true;
        try
        {
            _inner.WriteFrom(offsetBytes, lengthBytes, source, forceUnitAccess);
            failed = false;
        }
        catch (StorageException ex) when (ex.Error == StorageError.NoSpace)
        {
            _stats.CountNoSpace();
            throw;
        }
        finally
        {
            _stats[IoOperation.Write].Record(lengthBytes, Stopwatch.GetTimestamp() - start, failed);
        }
    }

    public override string ToString() => _inner.ToString() ?? Name;
}
