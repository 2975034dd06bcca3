namespace Tidemark.TestKit;

/// <summary>
/// A sparse in-memory <see cref="IBlockDevice"/> for protocol tests: units never written (or
/// unmapped) are holes and read as zeros. It follows the same argument checks as the engine so a
/// frontend test sees the same errors.
/// </summary>
public sealed class MemoryBlockDevice : IBlockDevice
{
    private const int UnitBytes = 4096;
    private readonly Dictionary<long, byte[]> _units = [];
    private readonly Lock _lock = new();
    private long _sizeBytes;

    public MemoryBlockDevice(long sizeBytes, int logicalBlockSizeBytes = 512, bool isReadOnly = false, string name = "memory")
    {
        if (logicalBlockSizeBytes is not (512 or 4096))
        {
            throw new ArgumentOutOfRangeException(nameof(logicalBlockSizeBytes), "512 or 4096");
        }

        _sizeBytes = sizeBytes;
        LogicalBlockSizeBytes = logicalBlockSizeBytes;
        IsReadOnly = isReadOnly;
        Name = name;
    }

    public Guid Id { get; } = Guid.NewGuid();

    public string Name { get; }

    public long SizeBytes => Volatile.Read(ref _sizeBytes);

    public int LogicalBlockSizeBytes { get; }

    public int AllocationUnitBytes => UnitBytes;

    public bool IsReadOnly { get; set; }

    public int FlushCount { get; private set; }

    public event EventHandler? SizeChanged;

    public void Resize(long sizeBytes)
    {
        Volatile.Write(ref _sizeBytes, sizeBytes);
        SizeChanged?.Invoke(this, EventArgs.Empty);
    }

    public void Read(long offsetBytes, Span<byte> destination)
    {
        Check(offsetBytes, destination.Length, write: false);
        lock (_lock)
        {
            Copy(offsetBytes, destination);
        }
    }

    public void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        Check(offsetBytes, source.Length, write: true);
        lock (_lock)
        {
            Store(offsetBytes, source);
            FuaWriteCount += forceUnitAccess ? 1 : 0;
        }
    }

    /// <summary>Writes that carried forceUnitAccess.</summary>
    public int FuaWriteCount { get; private set; }

    public void Flush()
    {
        lock (_lock)
        {
            FlushCount++;
        }
    }

    public void Unmap(long offsetBytes, long lengthBytes) => WriteZeroes(offsetBytes, lengthBytes, mayUnmap: true);

    public void WriteZeroes(long offsetBytes, long lengthBytes, bool mayUnmap)
    {
        Check(offsetBytes, lengthBytes, write: true);
        lock (_lock)
        {
            var end = offsetBytes + lengthBytes;
            for (var pos = offsetBytes; pos < end;)
            {
                var unit = pos / UnitBytes;
                var within = (int)(pos % UnitBytes);
                var n = (int)Math.Min(UnitBytes - within, end - pos);
                if (n == UnitBytes)
                {
                    _units.Remove(unit);
                }
                else if (_units.TryGetValue(unit, out var data))
                {
                    data.AsSpan(within, n).Clear();
                }

                pos += n;
            }
        }
    }

    public bool SoftwareWriteProtected { get; set; }

    /// <summary>Largest atomic write; 0 makes the device one without atomic writes.</summary>
    public int MaxAtomicWriteBytes { get; init; } = 1 << 20;

    /// <summary>Atomic writes (<see cref="WriteAtomic"/>) that reached the medium.</summary>
    public int AtomicWriteCount { get; private set; }

    public void WriteAtomic(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        // The engine's rules: whole allocation units, at most MaxAtomicWriteBytes.
        Check(offsetBytes, source.Length, write: true);
        if (MaxAtomicWriteBytes == 0)
        {
            throw new StorageException(StorageError.Unsupported, $"{Name} has no atomic write");
        }

        if (((offsetBytes | (long)source.Length) & (UnitBytes - 1)) != 0)
        {
            throw new StorageException(StorageError.Misaligned, $"an atomic write of {source.Length} bytes at {offsetBytes} is not aligned to {UnitBytes}-byte units");
        }

        if (source.Length > MaxAtomicWriteBytes)
        {
            throw new StorageException(StorageError.InvalidArgument, $"an atomic write of {source.Length} bytes is larger than {MaxAtomicWriteBytes}");
        }

        lock (_lock)
        {
            Store(offsetBytes, source);
            FuaWriteCount += forceUnitAccess ? 1 : 0;
            AtomicWriteCount++;
        }
    }

    public int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess)
    {
        if (expected.Length != replacement.Length)
        {
            throw new StorageException(StorageError.InvalidArgument, "compare and write needs equal lengths");
        }

        Check(offsetBytes, expected.Length, write: true);
        lock (_lock)
        {
            var current = new byte[expected.Length];
            Copy(offsetBytes, current);
            var mismatch = current.AsSpan().CommonPrefixLength(expected);
            if (mismatch < expected.Length)
            {
                return mismatch;
            }

            Store(offsetBytes, replacement);
            return -1;
        }
    }

    public int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination)
    {
        Check(offsetBytes, lengthBytes, write: false);
        var count = 0;
        lock (_lock)
        {
            var end = offsetBytes + lengthBytes;
            for (var pos = offsetBytes; pos < end && count <= destination.Length;)
            {
                var unit = pos / UnitBytes;
                var n = Math.Min(((unit + 1) * UnitBytes) - pos, end - pos);
                var state = _units.ContainsKey(unit) ? AllocationState.Allocated : AllocationState.Hole;
                if (count > 0 && destination[count - 1].State == state)
                {
                    var last = destination[count - 1];
                    destination[count - 1] = last with { LengthBytes = last.LengthBytes + n };
                }
                else if (count < destination.Length)
                {
                    destination[count++] = new AllocationRun(pos, n, state);
                }
                else
                {
                    break;
                }

                pos += n;
            }
        }

        return count;
    }

    private void Copy(long offsetBytes, Span<byte> destination)
    {
        var pos = offsetBytes;
        var done = 0;
        while (done < destination.Length)
        {
            var unit = pos / UnitBytes;
            var within = (int)(pos % UnitBytes);
            var n = Math.Min(UnitBytes - within, destination.Length - done);
            if (_units.TryGetValue(unit, out var data))
            {
                data.AsSpan(within, n).CopyTo(destination.Slice(done, n));
            }
            else
            {
                destination.Slice(done, n).Clear();
            }

            pos += n;
            done += n;
        }
    }

    private void Store(long offsetBytes, ReadOnlySpan<byte> source)
    {
        var pos = offsetBytes;
        var done = 0;
        while (done < source.Length)
        {
            var unit = pos / UnitBytes;
            var within = (int)(pos % UnitBytes);
            var n = Math.Min(UnitBytes - within, source.Length - done);
            if (!_units.TryGetValue(unit, out var data))
            {
                data = new byte[UnitBytes];
                _units[unit] = data;
            }

            source.Slice(done, n).CopyTo(data.AsSpan(within, n));
            pos += n;
            done += n;
        }
    }

    private void Check(long offsetBytes, long lengthBytes, bool write)
    {
        if (write && IsReadOnly)
        {
            throw new StorageException(StorageError.ReadOnly, $"{Name} is read-only");
        }

        if (offsetBytes % LogicalBlockSizeBytes != 0 || lengthBytes % LogicalBlockSizeBytes != 0)
        {
            throw new StorageException(StorageError.Misaligned, $"I/O at {offsetBytes}+{lengthBytes} is not aligned to {LogicalBlockSizeBytes}-byte blocks");
        }

        if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > SizeBytes)
        {
            throw new StorageException(StorageError.OutOfRange, $"I/O at {offsetBytes}+{lengthBytes} is beyond the end of {Name} ({SizeBytes} bytes)");
        }
    }
}
