namespace Tidemark;

/// <summary>
/// What a frontend (iSCSI, NBD) sees of a volume, a view or a snapshot. Offsets and lengths are in
/// bytes and must be multiples of <see cref="LogicalBlockSizeBytes"/>; every call but
/// <see cref="ReadAsync"/> is synchronous because the backing I/O is buffered pread/pwrite and
/// frontends handle requests inline on their connection loop (DESIGN.md, data-path performance);
/// <see cref="ReadAsync"/> is for devices whose reads wait on the network (ADR 0021).
/// Implementations are thread-safe.
/// Errors are <see cref="StorageException"/> with a <see cref="StorageError"/> code.
/// </summary>
public interface IBlockDevice
{
    /// <summary>Stable identity of the device (used for SCSI NAA / T10 identifiers and NBD names).</summary>
    Guid Id { get; }

    /// <summary>Human name, for example "mail" or "mail@monday".</summary>
    string Name { get; }

    /// <summary>Current virtual size; may grow at run time (see <see cref="SizeChanged"/>).</summary>
    long SizeBytes { get; }

    /// <summary>512 or 4096.</summary>
    int LogicalBlockSizeBytes { get; }

    /// <summary>Granularity of allocation, unmap and allocation status (4096).</summary>
    int AllocationUnitBytes { get; }

    /// <summary>True for snapshots: every write, unmap and write-zeroes fails with <see cref="StorageError.ReadOnly"/>.</summary>
    bool IsReadOnly { get; }

    /// <summary>Raised after the virtual size changed (frontends report "capacity data has changed").</summary>
    event EventHandler? SizeChanged;

    void Read(long offsetBytes, Span<byte> destination);

    /// <summary>Writes; with <paramref name="forceUnitAccess"/> the data is durable when this returns.</summary>
    void Write(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess);

    /// <summary>Makes every write that completed before this call durable.</summary>
    void Flush();

    /// <summary>Deallocates the range; it reads as zeros afterwards. Partial allocation units are zeroed.</summary>
    void Unmap(long offsetBytes, long lengthBytes);

    /// <summary>Makes the range read as zeros; with <paramref name="mayUnmap"/> whole units are deallocated.</summary>
    void WriteZeroes(long offsetBytes, long lengthBytes, bool mayUnmap);

    /// <summary>
    /// Atomically compares the range with <paramref name="expected"/> and, when equal, writes
    /// <paramref name="replacement"/> (SBC COMPARE AND WRITE). Returns -1 on success, or the byte offset
    /// of the first mismatch within the range, in which case nothing was written.
    /// </summary>
    int CompareAndWrite(long offsetBytes, ReadOnlySpan<byte> expected, ReadOnlySpan<byte> replacement, bool forceUnitAccess);

    /// <summary>
    /// Software write protection of the medium (SCSI control mode page SWP, set by an initiator with
    /// MODE SELECT): every frontend serving the device refuses writes while it is set, so it reaches
    /// NBD clients and other iSCSI exports of the same volume. Not saved: a restart clears it. A
    /// device that cannot hold it throws <see cref="StorageError.Unsupported"/> on a set.
    /// </summary>
    bool SoftwareWriteProtected
    {
        get => false;
        set => throw new StorageException(StorageError.Unsupported, $"{Name} cannot hold software write protection");
    }

    /// <summary>
    /// Largest write <see cref="WriteAtomic"/> accepts, in bytes; 0 when the device has no atomic
    /// write. Offsets and lengths of atomic writes are multiples of <see cref="AllocationUnitBytes"/>.
    /// </summary>
    int MaxAtomicWriteBytes => 0;

    /// <summary>
    /// Writes all or nothing (SBC WRITE ATOMIC): a concurrent read sees the range wholly old or wholly
    /// new, and after a crash it is wholly old or wholly new (wholly new once a flush or FUA followed).
    /// </summary>
    void WriteAtomic(long offsetBytes, ReadOnlySpan<byte> source, bool forceUnitAccess) =>
        throw new StorageException(StorageError.Unsupported, $"{Name} has no atomic write");

    /// <summary>
    /// How many reads the device serves well at once. 1 (the default) means a read is fastest done
    /// inline by the caller, one after another: a local file or block device answers from the page
    /// cache in microseconds, and a hand-off to another thread would cost more than the read. More
    /// than 1 means each read waits on something remote (a RADOS round trip) and several in flight
    /// share that wait, so a frontend may keep up to this many reads of one connection in flight.
    /// A hint: the device is thread-safe either way.
    /// </summary>
    int PreferredConcurrency => 1;

    /// <summary>
    /// Describes the allocation of [offset, offset+length) as consecutive runs starting at
    /// <paramref name="offsetBytes"/>. Fills as many runs as fit in <paramref name="destination"/> and
    /// returns how many were written; the caller continues after the last run for the rest.
    /// </summary>
    int GetAllocationStatus(long offsetBytes, long lengthBytes, Span<AllocationRun> destination);

    /// <summary>
    /// Writes the next <paramref name="lengthBytes"/> of <paramref name="source"/> at
    /// <paramref name="offsetBytes"/>, as <see cref="Write"/> would write them. A device that can let
    /// its store pull the bytes (the engine's volume over a file store: splice, no copy through
    /// memory) does; the default fills a buffer and calls <see cref="Write"/>, so every device and
    /// decorator behaves as for an ordinary write. When it throws, the source may be partly consumed
    /// (<see cref="IPayloadSource.RemainingBytes"/>); what was written of the range may have been
    /// written, as for a failed <see cref="Write"/>.
    /// </summary>
    void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess) =>
        PayloadSources.WriteThroughBuffer(this, offsetBytes, lengthBytes, source, forceUnitAccess);

    /// <summary>
    /// Reads like <see cref="Read"/>, without holding the caller's thread while the device waits on
    /// something remote (a RADOS round trip): the returned task completes, possibly on another
    /// thread (librados's), once <paramref name="destination"/> holds the data, and the caller must
    /// not touch the buffer before. The default reads synchronously and returns a completed task, so
    /// every device works; a device whose <see cref="PreferredConcurrency"/> is above 1 should
    /// override it, because a frontend starts many of these from its one connection thread. Errors
    /// are a faulted task with a <see cref="StorageException"/>. Continuations of the task may run on
    /// the completing thread: they must not block it (ADR 0021).
    /// </summary>
    ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default) =>
        this.ReadInline(offsetBytes, destination);
}

/// <summary>A run of the device's address space with one allocation state.</summary>
public readonly record struct AllocationRun(long OffsetBytes, long LengthBytes, AllocationState State);

public enum AllocationState
{
    /// <summary>Backed by storage; holds data (possibly zeros).</summary>
    Allocated = 0,

    /// <summary>Not backed by storage; reads as zeros.</summary>
    Hole = 1,
}
