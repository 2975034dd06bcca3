using System.Buffers;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

/// <summary>
/// A thin volume or a view: the live, writable image a frontend exports. Thread-safe; I/O runs
/// concurrently with other I/O and with snapshots (which pause it for an instant through the gate).
/// </summary>
public sealed class Volume : IBlockDevice
{
    private const int RegionShift = 6; // 64 blocks (256 KiB) share a lock stripe
    private const int Stripes = 64;

    private readonly Pool _pool;
    private readonly Lock[] _stripes = [.. Enumerable.Range(0, Stripes).Select(_ => new Lock())];
    private Lineage _lineage;
    private volatile bool _deleted;
    private volatile bool _softwareWriteProtected;

    internal Volume(Pool pool, VolumeRecord record, Lineage lineage)
    {
        _pool = pool;
        Record = record;
        _lineage = lineage;
    }

    public Guid Id => Record.Id;

    public string Name => Record.Name;

    public VolumeKind Kind => Record.Kind;

    /// <summary>For a view: the "volume@snapshot" it was created from.</summary>
    public string? Origin => Record.Origin;

    public long SizeBytes => Record.SizeBytes;

    public int LogicalBlockSizeBytes => Record.LogicalBlockSize;

    public int AllocationUnitBytes => Lineage.BlockBytes;

    public bool IsReadOnly => false;

    public DateTimeOffset CreatedAt => Record.CreatedAt;

    /// <summary>
    /// Bytes of the live image backed by storage (written and not unmapped, including what a view or a
    /// rolled-back volume shares with its source); null for volumes made before the engine counted.
    /// </summary>
    public long? AllocatedBytes => Lineage.MappedBlocks * Lineage.BlockBytes;

    public event EventHandler? SizeChanged;

    /// <summary>
    /// Set by an initiator (SCSI SWP) and honoured by the frontends, which refuse client writes while it
    /// is set; the engine's own writers (replication, rollback) are not clients and ignore it. In
    /// memory only, as SPC-4 allows for a current mode value.
    /// </summary>
    public bool SoftwareWriteProtected
    {
        get => _softwareWriteProtected;
        set => _softwareWriteProtected = value;
    }

    internal VolumeRecord Record { get; }

    internal Lineage Lineage => Volatile.Read(ref _lineage);

    /// <summary>Entered by every I/O; held exclusively by snapshot, rollback, resize and delete.</summary>
    internal IoGate Gate { get; } = new();

    internal bool Deleted => _deleted;

    internal void SwitchLineage(Lineage lineage) => Volatile.Write(ref _lineage, lineage);

    internal void MarkDeleted() => _deleted = true;

    internal void RaiseSizeChanged() => SizeChanged?.Invoke(this, EventArgs.Empty);

    /// <summary>
    /// Largest <see cref="WriteAtomic"/>: it needs fresh blocks for the whole range while the old ones
    /// are still mapped and switches the map under one hold of the map lock, so the bound keeps both
    /// the transient space and the time other map users wait small (ADR 0018).
    /// </summary>
    public const int MaxAtomicBytes = 1 << 20;

    int IBlockDevice.MaxAtomicWriteBytes => MaxAtomicBytes;

    /// <summary>The pool's stores decide (a RADOS-backed volume serves many reads at once well).</summary>
    public int PreferredConcurrency => _pool.PreferredConcurrency;

    // Optimistic lock-free reads that overlapped an atomic map switch retry this often, then read
    // under the region locks, which no atomic write of the range holds at that time.
    private const int OptimisticReadAttempts = 3;

    public void Read(long offsetBytes, Span<byte> destination)
    {
        BlockIo.Check(this, offsetBytes, destination.Length, write: false);
        var gate = Gate.Enter();
        var phase = _pool.Grace.Enter();
        try
        {
            ThrowIfDeleted();
            var lineage = Lineage;
            for (var attempt = 0; ; attempt++)
            {
                // A sequence lock over atomic writes: a read that saw no switch start or end while it
                // resolved its blocks saw each atomic write wholly old or wholly new. The blocks it
                // read stay unreused until it leaves the grace period, whatever their map says now.
                var seq = lineage.AtomicSwitchSeq;
                if (attempt == OptimisticReadAttempts)
                {
                    var taken = EnterStripes(offsetBytes, destination.Length);
                    try
                    {
                        BlockIo.Read(lineage, Lineage.Live, offsetBytes, destination);
                    }
                    finally
                    {
                        ExitStripes(taken);
                    }

                    break;
                }

                if ((seq & 1) == 0)
                {
                    BlockIo.Read(lineage, Lineage.Live, offsetBytes, destination);
                    Interlocked.MemoryBarrier();
                    if (lineage.AtomicSwitchSeq == seq)
                    {
                        break;
                    }
                }
            }
        }
        finally
        {
            _pool.Grace.Exit(phase);
            Gate.Exit(gate);
        }
    }

    /// <summary>
    /// The read without a thread waiting for the store (ADR 0021): blocks resolved here, store reads
    /// started, and the gate and grace period held until they ended, so a snapshot or delete waits
    /// for the read as for a synchronous one and the blocks it reads stay unreused until it ended. A
    /// range that is not whole blocks takes the synchronous path.
    /// </summary>
    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        if (!BlockIo.IsWholeBlocks(offsetBytes, destination.Length))
        {
            return this.ReadInline(offsetBytes, destination);
        }

        try
        {
            BlockIo.Check(this, offsetBytes, destination.Length, write: false);
        }
        catch (StorageException ex)
        {
            return ValueTask.FromException(ex);
        }

        var gate = Gate.Enter();
        var phase = _pool.Grace.Enter();
        ValueTask pending;
        try
        {
            ThrowIfDeleted();
            pending = BlockIo.StartReadBlocks(Lineage, Lineage.Live, offsetBytes, destination, this);
        }
        catch (Exception ex)
        {
            pending = ValueTask.FromException(ex);
        }

        return Completion.Then(pending, (Volume: this, Gate: gate, Phase: phase), static (held, _) =>
        {
            held.Volume._pool.Grace.Exit(held.Phase);
            held.Volume.Gate.Exit(held.Gate);
        });
    }

    /// <summary>
    /// Resolves live blocks with <see cref="Read"/>'s sequence lock over atomic switches: a resolution
    /// that saw no switch start or end saw each atomic write wholly old or wholly new, and the blocks
    /// it names stay unreused until the caller leaves the grace period, so their data may be read
    /// after this returns. After <see cref="OptimisticReadAttempts"/> tries it resolves under the
    /// region locks, which no atomic write of the range holds then; they are not held while reading.
    /// </summary>
    internal void ResolveLive(Lineage lineage, long firstBlock, Span<MapEntry> entries)
    {
        for (var attempt = 0; attempt < OptimisticReadAttempts; attempt++)
        {
            var seq = lineage.AtomicSwitchSeq;
            if ((seq & 1) == 0)
            {
                lineage.Resolve(firstBlock, entries.Length, Lineage.Live, entries);
                AfterOptimisticResolve?.Invoke();
                Interlocked.MemoryBarrier();
                if (lineage.AtomicSwitchSeq == seq)
                {
                    return;
                }
            }
        }

        var taken = EnterStripes(firstBlock << Lineage.BlockShift, (long)entries.Length << Lineage.BlockShift);
        try
        {
            lineage.Resolve(firstBlock, entries.Length, Lineage.Live, entries);
        }
        finally
        {
            ExitStripes(taken);
        }
    }

    /// <summary>Tests: called after each lock-free resolution of <see cref="ResolveLive"/>, before it checks for a switch.</summary>
    internal Action? AfterOptimisticResolve { get; set; }

    public void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        BlockIo.Check(this, offsetBytes, source.Length, write: true);
        if (source.Length == 0)
        {
            return;
        }

        var lineage = Locked(offsetBytes, source.Length, source, static (volume, lineage, offset, data, _) => WriteLocked(lineage, offset, data));
        AfterWrite(lineage, forceUnitAccess);
    }

    /// <summary>
    /// Writes whole allocation units all or nothing (ADR 0018): the data goes to fresh blocks, then the
    /// map switches to them in one step that one commit carries whole, then the old blocks are freed.
    /// </summary>
    public void WriteAtomic(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess)
    {
        BlockIo.Check(this, offsetBytes, source.Length, write: true);
        if (((offsetBytes | (long)source.Length) & (Lineage.BlockBytes - 1)) != 0)
        {
            throw new StorageException(StorageError.Misaligned, $"an atomic write of {source.Length} bytes at {offsetBytes} is not aligned to the {Lineage.BlockBytes}-byte allocation units of {Name}");
        }

        if (source.Length > MaxAtomicBytes)
        {
            throw new StorageException(StorageError.InvalidArgument, $"an atomic write of {source.Length} bytes is larger than the {MaxAtomicBytes} bytes {Name} writes atomically; split it");
        }

        if (source.Length == 0)
        {
            return;
        }

        var lineage = Locked(offsetBytes, source.Length, source, static (volume, lineage, offset, data, _) => lineage.WriteBlocksAtomic(offset >> Lineage.BlockShift, data));
        AfterWrite(lineage, forceUnitAccess);
    }

    public void Flush()
    {
        ThrowIfDeleted();
        _pool.Flush();
    }

    public void Unmap(long offsetBytes, long lengthBytes) => WriteZeroes(offsetBytes, lengthBytes, mayUnmap: true);

    public void WriteZeroes(long offsetBytes, long lengthBytes, bool mayUnmap)
    {
        BlockIo.Check(this, offsetBytes, lengthBytes, write: true);
        if (lengthBytes == 0)
        {
            return;
        }

        var lineage = Locked(offsetBytes, lengthBytes, default, (volume, lineage, offset, _, length) => ZeroLocked(lineage, offset, length, mayUnmap));
        AfterWrite(lineage, forceUnitAccess: false);
    }

    public int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess)
    {
        if (expected.Length != replacement.Length)
        {
            throw new StorageException(StorageError.InvalidArgument, "compare and write needs the expected and new data to be the same length");
        }

        BlockIo.Check(this, offsetBytes, expected.Length, write: true);
        var mismatch = -1;
        var buffer = ArrayPool<byte>.Shared.Rent(expected.Length);
        try
        {
            var expectedCopy = expected.ToArray();
            var lineage = Locked(offsetBytes, expected.Length, replacement, (volume, lineage, offset, data, length) =>
            {
                var current = buffer.AsSpan(0, (int)length);
                BlockIo.Read(lineage, Lineage.Live, offset, current);
                mismatch = current.CommonPrefixLength(expectedCopy);
                if (mismatch == current.Length)
                {
                    mismatch = -1;
                    WriteLocked(lineage, offset, data);
                }
            });
            if (mismatch < 0)
            {
                AfterWrite(lineage, forceUnitAccess);
            }

            return mismatch;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination)
    {
        BlockIo.Check(this, offsetBytes, lengthBytes, write: false);
        var gate = Gate.Enter();
        try
        {
            ThrowIfDeleted();
            return BlockIo.AllocationStatus(Lineage, Lineage.Live, offsetBytes, lengthBytes, destination);
        }
        finally
        {
            Gate.Exit(gate);
        }
    }

    /// <summary>
    /// Writes a payload its source delivers (<see cref="IBlockDevice.WriteFrom"/>): whole blocks go
    /// to the store straight from the source (a file store lets it fill the file: splice), in the
    /// order Lineage.WriteBlocks writes them, front to back. A range that is not whole blocks goes
    /// through memory (its partial blocks are read, merged and written like any write).
    /// </summary>
    /// <remarks>
    /// The region locks, the gate and the grace period are held while the source delivers, so a peer
    /// that trickles its payload holds them that long: other writers of the range, a snapshot (which
    /// waits for the gate) and block reuse wait. The transport bounds it: the source has its bytes in
    /// a pipe before this is called when the payload fits the pipe, and a deadline for the rest
    /// (docs/adr/0010-protocol-transport.md, "Follow-up: the payload source").
    /// </remarks>
    public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (((offsetBytes | (long)lengthBytes) & (Lineage.BlockBytes - 1)) != 0)
        {
            PayloadSources.WriteThroughBuffer(this, offsetBytes, lengthBytes, source, forceUnitAccess);
            return;
        }

        BlockIo.Check(this, offsetBytes, lengthBytes, write: true);
        if (lengthBytes == 0)
        {
            return;
        }

        var scope = EnterLocked(offsetBytes, lengthBytes);
        try
        {
            scope.Lineage.WriteBlocks(offsetBytes >> Lineage.BlockShift, new BlockSource(source, lengthBytes));
        }
        finally
        {
            ExitLocked(scope);
        }

        AfterWrite(scope.Lineage, forceUnitAccess);
    }

    private delegate void LockedAction(Volume volume, Lineage lineage, long offsetBytes, ReadOnlySpan<byte> data, long lengthBytes);

    // Runs a modifying operation under the gate (shared) and the region locks of its range, so no
    // other write to the same blocks interleaves with its read-modify-write or redirect decisions.
    private Lineage Locked(long offsetBytes, long lengthBytes, ReadOnlySpan<byte> data, LockedAction action)
    {
        var scope = EnterLocked(offsetBytes, lengthBytes);
        try
        {
            action(this, scope.Lineage, offsetBytes, data, lengthBytes);
            return scope.Lineage;
        }
        finally
        {
            ExitLocked(scope);
        }
    }

    private readonly record struct LockScope(int Gate, int Phase, ulong Stripes, Lineage Lineage);

    private LockScope EnterLocked(long offsetBytes, long lengthBytes)
    {
        var gate = Gate.Enter();
        var phase = _pool.Grace.Enter();
        try
        {
            ThrowIfDeleted();
            _pool.ThrowIfUnusable();
            var taken = EnterStripes(offsetBytes, lengthBytes);
            return new LockScope(gate, phase, taken, Lineage);
        }
        catch
        {
            _pool.Grace.Exit(phase);
            Gate.Exit(gate);
            throw;
        }
    }

    private void ExitLocked(in LockScope scope)
    {
        ExitStripes(scope.Stripes);
        _pool.Grace.Exit(scope.Phase);
        Gate.Exit(scope.Gate);
    }

    // Takes the region locks of a range in stripe order (so two ranges never wait on each other in a cycle).
    private ulong EnterStripes(long offsetBytes, long lengthBytes)
    {
        var firstRegion = offsetBytes >> (Lineage.BlockShift + RegionShift);
        var lastRegion = (offsetBytes + lengthBytes - 1) >> (Lineage.BlockShift + RegionShift);
        var mask = lastRegion - firstRegion >= Stripes - 1 ? ulong.MaxValue : RegionMask(firstRegion, lastRegion);
        var taken = 0UL;
        try
        {
            for (var bits = mask; bits != 0; bits &= bits - 1)
            {
                var stripe = System.Numerics.BitOperations.TrailingZeroCount(bits);
                _stripes[stripe].Enter();
                taken |= 1UL << stripe;
            }

            return taken;
        }
        catch
        {
            ExitStripes(taken);
            throw;
        }
    }

    private void ExitStripes(ulong taken)
    {
        for (var bits = taken; bits != 0; bits &= bits - 1)
        {
            _stripes[System.Numerics.BitOperations.TrailingZeroCount(bits)].Exit();
        }
    }

    private static ulong RegionMask(long firstRegion, long lastRegion)
    {
        var mask = 0UL;
        for (var r = firstRegion; r <= lastRegion; r++)
        {
            mask |= 1UL << (int)(r & (Stripes - 1));
        }

        return mask;
    }

    private void AfterWrite(Lineage lineage, bool forceUnitAccess)
    {
        var dirty = lineage.DirtyPageCount;
        if (forceUnitAccess || dirty > 2 * _pool.Options.MaxDirtyPages)
        {
            _pool.Flush();
        }
        else if (dirty > _pool.Options.MaxDirtyPages)
        {
            _pool.RequestBackgroundCommit();
        }
    }

    private static void WriteLocked(Lineage lineage, long offsetBytes, ReadOnlySpan<byte> data)
    {
        var within = (int)(offsetBytes & (Lineage.BlockBytes - 1));
        var block = offsetBytes >> Lineage.BlockShift;
        var done = 0;
        if (within != 0 || data.Length < Lineage.BlockBytes)
        {
            var n = Math.Min(Lineage.BlockBytes - within, data.Length);
            MergeBlock(lineage, block, within, data[..n]);
            done = n;
            block++;
        }

        var whole = (data.Length - done) & ~(Lineage.BlockBytes - 1);
        if (whole > 0)
        {
            lineage.WriteBlocks(block, data.Slice(done, whole));
            done += whole;
            block += whole >> Lineage.BlockShift;
        }

        if (done < data.Length)
        {
            MergeBlock(lineage, block, 0, data[done..]);
        }
    }

    // A write smaller than a block: read the block as it is, merge, write it whole.
    private static void MergeBlock(Lineage lineage, long block, int within, ReadOnlySpan<byte> part)
    {
        Span<byte> buffer = stackalloc byte[Lineage.BlockBytes];
        lineage.ReadBlocks(block, buffer, Lineage.Live);
        part.CopyTo(buffer[within..]);
        lineage.WriteBlocks(block, buffer);
    }

    private static void ZeroLocked(Lineage lineage, long offsetBytes, long lengthBytes, bool mayUnmap)
    {
        var end = offsetBytes + lengthBytes;
        var firstWhole = (offsetBytes + Lineage.BlockBytes - 1) & ~(long)(Lineage.BlockBytes - 1);
        var lastWhole = end & ~(long)(Lineage.BlockBytes - 1);
        if (!mayUnmap || firstWhole >= lastWhole)
        {
            WriteZeroData(lineage, offsetBytes, lengthBytes);
            return;
        }

        if (firstWhole > offsetBytes)
        {
            WriteZeroData(lineage, offsetBytes, firstWhole - offsetBytes);
        }

        lineage.ZeroBlocks(firstWhole >> Lineage.BlockShift, (lastWhole - firstWhole) >> Lineage.BlockShift);
        if (end > lastWhole)
        {
            WriteZeroData(lineage, lastWhole, end - lastWhole);
        }
    }

    private static void WriteZeroData(Lineage lineage, long offsetBytes, long lengthBytes)
    {
        const int Chunk = 1 << 20;
        var zeros = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            Array.Clear(zeros, 0, Chunk);
            for (var pos = offsetBytes; pos < offsetBytes + lengthBytes; pos += Chunk)
            {
                var n = (int)Math.Min(Chunk, offsetBytes + lengthBytes - pos);
                WriteLocked(lineage, pos, zeros.AsSpan(0, n));
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    private void ThrowIfDeleted()
    {
        if (_deleted)
        {
            throw new StorageException(StorageError.NotFound, $"volume {Name} was deleted");
        }
    }

    public override string ToString() => Name;
}
