using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

/// <summary>A snapshot as a read-only block device ("volume@snapshot"), for read-only exports and copies.</summary>
public sealed class SnapshotDevice : IBlockDevice
{
    private readonly Pool _pool;
    private readonly Lineage _lineage;
    private readonly SnapshotRecord _snapshot;

    internal SnapshotDevice(Pool pool, Lineage lineage, SnapshotRecord snapshot, string volumeName, int logicalBlockSize)
    {
        _pool = pool;
        _lineage = lineage;
        _snapshot = snapshot;
        Name = $"{volumeName}@{snapshot.Name}";
        LogicalBlockSizeBytes = logicalBlockSize;
        Id = DeriveId(snapshot);
    }

    public Guid Id { get; }

    public string Name { get; }

    public long SizeBytes => _snapshot.SizeBytes;

    public int LogicalBlockSizeBytes { get; }

    public int AllocationUnitBytes => Lineage.BlockBytes;

    public bool IsReadOnly => true;

    /// <summary>The pool's stores decide, as for a volume.</summary>
    public int PreferredConcurrency => _pool.PreferredConcurrency;

    public event EventHandler? SizeChanged
    {
        add { }
        remove { }
    }

    public void Read(long offsetBytes, Span<byte> destination)
    {
        BlockIo.Check(this, offsetBytes, destination.Length, write: false);
        var phase = _pool.Grace.Enter();
        try
        {
            ThrowIfGone();
            BlockIo.Read(_lineage, _snapshot.Epoch, offsetBytes, destination);
        }
        finally
        {
            _pool.Grace.Exit(phase);
        }
    }

    /// <summary>The read without a thread waiting for the store, as <see cref="Volume.ReadAsync"/> (ADR 0021); the grace period is held until it ended.</summary>
    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (!BlockIo.IsWholeBlocks(offsetBytes, destination.Length))
        {
            return this.ReadInline(offsetBytes, destination);
        }

        var phase = _pool.Grace.Enter();
        ValueTask pending;
        try
        {
            BlockIo.Check(this, offsetBytes, destination.Length, write: false);
            ThrowIfGone();
            pending = BlockIo.StartReadBlocks(_lineage, _snapshot.Epoch, offsetBytes, destination, volume: null);
        }
        catch (Exception ex)
        {
            pending = ValueTask.FromException(ex);
        }

        return Completion.Then(pending, (_pool.Grace, phase), static (held, _) => held.Grace.Exit(held.phase));
    }

    public void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess) => BlockIo.Check(this, offsetBytes, source.Length, write: true);

    public void Flush()
    {
    }

    public void Unmap(long offsetBytes, long lengthBytes) => BlockIo.Check(this, offsetBytes, lengthBytes, write: true);

    public void WriteZeroes(long offsetBytes, long lengthBytes, bool mayUnmap) => BlockIo.Check(this, offsetBytes, lengthBytes, write: true);

    public int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess)
    {
        BlockIo.Check(this, offsetBytes, expected.Length, write: true);
        return -1;
    }

    public int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination)
    {
        BlockIo.Check(this, offsetBytes, lengthBytes, write: false);
        var phase = _pool.Grace.Enter();
        try
        {
            ThrowIfGone();
            return BlockIo.AllocationStatus(_lineage, _snapshot.Epoch, offsetBytes, lengthBytes, destination);
        }
        finally
        {
            _pool.Grace.Exit(phase);
        }
    }

    private void ThrowIfGone()
    {
        if (_snapshot.State == SnapshotState.Deleting)
        {
            throw new StorageException(StorageError.NotFound, $"snapshot {Name} was deleted");
        }
    }

    // Stable across restarts: the same snapshot always has the same identity (SCSI NAA, NBD).
    private static Guid DeriveId(SnapshotRecord snapshot)
    {
        Span<byte> bytes = stackalloc byte[16];
        snapshot.Volume.TryWriteBytes(bytes);
        var tag = BitConverter.GetBytes(((ulong)snapshot.Lineage << 40) ^ snapshot.Epoch ^ 0x5A5A5A5A5A5A5A5AUL);
        for (var i = 0; i < 8; i++)
        {
            bytes[8 + i] ^= tag[i];
        }

        return new Guid(bytes);
    }
}
