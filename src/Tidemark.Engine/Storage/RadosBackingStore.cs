using System.Runtime.InteropServices;
using System.Text.Json;

namespace Tidemark.Engine.Storage;

/// <summary>
/// A store in a Ceph RADOS pool (ADR 0017): the byte space cut into 4 MiB objects, writes started
/// as librados aio (many in flight, bounded) and waited for by <see cref="Flush"/>, an exclusive
/// lock object with a renewed lease so two servers never write the same store, and space given
/// back by removing or zeroing objects.
/// </summary>
public sealed partial class RadosBackingStore : IBackingStore
{
    /// <summary>Bytes per RADOS object: RBD's default; a 1 MiB extent is one operation, a 4 KiB write a partial write.</summary>
    public const int ObjectBytes = 4 << 20;


    private readonly RadosLocation _location;
    private readonly RadosStoreLock _lock;
    private readonly nint _cluster;
    private readonly nint _io;
    private readonly RadosWriteQueue _writes;
    private readonly RadosReadGate _reads = new();
    private bool _disposed;

    private RadosBackingStore(RadosLocation location, nint cluster, nint io, long capacityBytes, RadosStoreLock storeLock)
    {
        _location = location;
        _cluster = cluster;
        _io = io;
        CapacityBytes = capacityBytes;
        Location = location.ToString();
        _lock = storeLock;
        _writes = new RadosWriteQueue(io, Failure);
    }

    public string Location { get; }

    public long CapacityBytes { get; }

    /// <summary>
    /// Every read is a round trip to an OSD whose cost is mostly waiting and waking (issue 22): 32 in
    /// flight share it, as an RBD image at queue depth 32 does; the read gate still bounds what all
    /// callers together have in flight (<see cref="RadosReadGate.MaxReads"/>).
    /// </summary>
    public int PreferredConcurrency => 32;

    /// <summary>Connects, takes the lock and, when <paramref name="capacityBytes"/> is not positive, sizes the store from the pool's free space.</summary>
    public static RadosBackingStore Open(string location, long capacityBytes) => Open(location, capacityBytes, null);

    /// <summary>As <see cref="Open(string, long)"/>, with a lock lease of its own (tests of a lapsed lease).</summary>
    internal static RadosBackingStore Open(string location, long capacityBytes, TimeSpan? lease)
    {
        var where = RadosLocation.Parse(location);

        // librados's own copy of each write (up to an object) from the heaps, not a fresh mapping per write.
        Metadata.NativeHeap.ForLargeCopies(ObjectBytes + (64 << 10), 16 << 20);
        var (cluster, io) = Connect(where);
        try
        {
            var capacity = capacityBytes > 0 ? capacityBytes : PoolMaxAvailable(cluster, where);
            capacity = capacity / Lineage.BlockBytes * Lineage.BlockBytes;
            return new RadosBackingStore(where, cluster, io, capacity, RadosStoreLock.Take(io, where, lease));
        }
        catch
        {
            RadosNative.IoCtxDestroy(io);
            RadosNative.Shutdown(cluster);
            throw;
        }
    }

    /// <summary>
    /// Reads over several objects as librados aio: every object piece of the range is started at once
    /// and waited for together, straight into <paramref name="destination"/> (no copy); a read inside
    /// one object is one blocking read. Callers on other threads
    /// read in parallel, bounded by <see cref="RadosReadGate"/>. A read first waits for the writes in
    /// flight that overlap it, so it sees every write started before it. An OSD or monitor that does
    /// not answer fails the read with an I/O error within the timeout, as a write does.
    /// </summary>
    public void Read(long offsetBytes, Span<byte> destination)
    {
        ThrowIfFenced();
        CheckRange(offsetBytes, destination.Length);
        if (destination.IsEmpty)
        {
            return;
        }

        _writes.WaitForOverlapping(offsetBytes, destination.Length);
        var pieces = (int)(((offsetBytes + destination.Length - 1) / ObjectBytes) - (offsetBytes / ObjectBytes) + 1);
        _reads.Enter(pieces, destination.Length);
        if (pieces == 1)
        {
            // One object (every 4 KiB read): librados's own blocking read is the same operation
            // without a completion to create, wait for and release.
            try
            {
                ReadOne(offsetBytes, destination);
                return;
            }
            finally
            {
                _reads.Exit(1, destination.Length);
            }
        }

        try
        {
            ReadPieces([new StoreRead(offsetBytes, 0, destination.Length)], pieces, destination);
        }
        finally
        {
            _reads.Exit(pieces, destination.Length);
        }
    }

    /// <summary>
    /// The runs of a fragmented volume range: every object piece of every run is started as
    /// librados aio at once and waited for together (one round trip, not one per run), straight
    /// into <paramref name="destination"/>. Bounded with other readers by <see cref="RadosReadGate"/>;
    /// each run first waits for the writes in flight that overlap it, as <see cref="Read"/> does.
    /// </summary>
    public void ReadScattered(ReadOnlySpan<StoreRead> reads, Span<byte> destination)
    {
        ThrowIfFenced();
        if (reads.Length == 1)
        {
            Read(reads[0].OffsetBytes, destination.Slice(reads[0].DestinationOffset, reads[0].LengthBytes));
            return;
        }

        var pieces = 0;
        long bytes = 0;
        foreach (var read in reads)
        {
            CheckRange(read.OffsetBytes, read.LengthBytes);
            _ = destination.Slice(read.DestinationOffset, read.LengthBytes); // in the buffer, or ArgumentOutOfRange before anything starts
            if (read.LengthBytes == 0)
            {
                continue;
            }

            _writes.WaitForOverlapping(read.OffsetBytes, read.LengthBytes);
            pieces += (int)(((read.OffsetBytes + read.LengthBytes - 1) / ObjectBytes) - (read.OffsetBytes / ObjectBytes) + 1);
            bytes += read.LengthBytes;
        }

        if (pieces == 0)
        {
            return;
        }

        _reads.Enter(pieces, bytes);
        try
        {
            ReadPieces(reads, pieces, destination);
        }
        finally
        {
            _reads.Exit(pieces, bytes);
        }
    }

    /// <summary>Starts every object piece of <paramref name="reads"/> as aio, then waits for all of them; the first failure is thrown once every started piece ended.</summary>
    private unsafe void ReadPieces(ReadOnlySpan<StoreRead> reads, int pieces, Span<byte> destination)
    {
        Span<nint> completions = pieces <= 8 ? stackalloc nint[pieces] : new nint[pieces];
        completions.Clear();
        StorageException? failure = null;
        try
        {
            fixed (byte* start = destination)
            {
                // Every read started must be waited for before the buffer is unpinned, also on failure.
                var started = 0;
                foreach (var read in reads)
                {
                    for (long at = read.OffsetBytes, done = 0; done < read.LengthBytes && failure is null; started++)
                    {
                        var (oid, inObject, n) = Piece(at, (int)(read.LengthBytes - done));
                        var rc = RadosNative.AioCreateCompletion(0, 0, 0, out completions[started]);
                        if (rc >= 0)
                        {
                            rc = RadosNative.AioRead(_io, oid, completions[started], (nint)(start + read.DestinationOffset + done), (nuint)n, (ulong)inObject);
                        }

                        if (rc < 0)
                        {
                            failure = Failure(rc, $"read of {n} bytes at {at} from {oid}");
                            break;
                        }

                        at += n;
                        done += n;
                    }

                    if (failure is not null)
                    {
                        break;
                    }
                }

                var i = 0;
                foreach (var read in reads)
                {
                    for (long at = read.OffsetBytes, done = 0; done < read.LengthBytes && i < started; i++)
                    {
                        var (oid, _, n) = Piece(at, (int)(read.LengthBytes - done));
                        var rc = RadosNative.AioWaitForComplete(completions[i]);
                        if (rc >= 0)
                        {
                            rc = RadosNative.AioGetReturnValue(completions[i]);
                        }

                        var chunk = destination.Slice(read.DestinationOffset + (int)done, n);
                        if (rc == -RadosNative.Enoent)
                        {
                            chunk.Clear(); // never written: zeros, like a hole in a sparse file
                        }
                        else if (rc < 0)
                        {
                            failure ??= Failure(rc, $"read of {n} bytes at {at} from {oid}");
                        }
                        else if (rc < n)
                        {
                            chunk[rc..].Clear(); // beyond the object's end: never written
                        }

                        at += n;
                        done += n;
                    }
                }
            }
        }
        finally
        {
            foreach (var completion in completions)
            {
                if (completion != 0)
                {
                    RadosNative.AioRelease(completion);
                }
            }
        }

        if (failure is not null)
        {
            throw failure;
        }
    }

    private void ReadOne(long offsetBytes, Span<byte> destination)
    {
        var (oid, inObject, n) = Piece(offsetBytes, destination.Length);
        var rc = RadosNative.Read(_io, oid, ref MemoryMarshal.GetReference(destination), (nuint)n, (ulong)inObject);
        if (rc == -RadosNative.Enoent)
        {
            destination.Clear(); // never written: zeros, like a hole in a sparse file
        }
        else if (rc < 0)
        {
            throw Failure(rc, $"read of {n} bytes at {offsetBytes} from {oid}");
        }
        else if (rc < n)
        {
            destination[rc..].Clear(); // beyond the object's end: never written
        }
    }

    /// <summary>
    /// Starts the write (librados aio on a copy of the data) and returns: like a disk's volatile
    /// cache, it is durable once <see cref="Flush"/> returned. Up to <see cref="RadosWriteQueue.MaxWrites"/>
    /// writes (and <see cref="RadosWriteQueue.MaxBytes"/>) are in flight at once; beyond that the writer
    /// waits for the oldest, so memory stays bounded.
    /// </summary>
    public void Write(long offsetBytes, ReadOnlySpan<byte> source)
    {
        ThrowIfFenced();
        ThrowIfWriteFailed();
        CheckRange(offsetBytes, source.Length);
        while (source.Length > 0)
        {
            var (oid, inObject, n) = Piece(offsetBytes, source.Length);
            _writes.Start(oid, inObject, source[..n], offsetBytes);
            offsetBytes += n;
            source = source[n..];
        }
    }

    /// <summary>
    /// Waits for every write started before it (writes started meanwhile go on). A RADOS write
    /// completes only once every replica committed it, so then they are all durable. A write the
    /// cluster did not answer in time is held and written again here once the cluster is back; while
    /// it is away this flush fails with an I/O error and nothing is dropped. A write that failed
    /// otherwise (pool full) fails this flush and every later one (and every later write): what it
    /// held is lost, so the engine must not commit metadata over it; reopening the pool starts again
    /// from the last durable state. A store that lost its lock says so here too.
    /// </summary>
    public void Flush()
    {
        ThrowIfFenced();
        _writes.WaitForStarted();
        ThrowIfWriteFailed();
    }

    /// <summary>
    /// Flushes before the engine takes anything from the volumes' maps for a commit: when the
    /// cluster is away the commit fails here with nothing consumed, and the pool stays online to
    /// serve again once the cluster answers (ADR 0017, recovery without a restart).
    /// </summary>
    public void PrepareCommit() => Flush();

    /// <summary>
    /// Why a new pool refuses this store when its first block holds data, and what to do in RADOS
    /// terms: the objects of the prefix belong to another pool's store (or something else).
    /// </summary>
    internal string NotEmptyMessage =>
        $"{Location} is not empty: RADOS pool {_location.Pool} already holds objects {_location.Prefix}.data.* "
        + $"({_location.DataObject(0)} is not zeros: another Tidemark pool's store, or other data). Give this store another prefix "
        + $"(rados:{_location.Pool}/OTHER), or, only if nothing in them is needed, remove them first: "
        + $"rados -p {_location.Pool} ls | grep '^{_location.Prefix}\\.' | xargs -r -n 64 rados -p {_location.Pool} rm";

    /// <summary>Writes in flight now.</summary>
    internal int WritesInFlight => _writes.Count;

    /// <summary>The most object reads in flight at once so far (all callers together).</summary>
    internal int PeakReadsInFlight => _reads.PeakReads;

    private void ThrowIfWriteFailed()
    {
        if (_writes.FirstFailure is { } failure)
        {
            throw new StorageException(failure.Error, $"{failure.Message}; the store takes no more writes until the pool is reopened", failure);
        }
    }

    /// <summary>Removes the objects a freed range covers whole and zeroes the rest of it (ENOENT counts as done).</summary>
    public void Discard(long offsetBytes, long lengthBytes)
    {
        // Never while another server may hold the store (lock lost, or its lease ran out).
        if (!_lock.IsHeld)
        {
            return;
        }

        while (lengthBytes > 0)
        {
            var (oid, inObject, n) = Piece(offsetBytes, (int)Math.Min(lengthBytes, ObjectBytes));
            int rc;
            if (inObject == 0 && n == ObjectBytes)
            {
                rc = RadosNative.Remove(_io, oid);
            }
            else
            {
                var op = RadosNative.CreateWriteOp();
                try
                {
                    RadosNative.WriteOpZero(op, (ulong)inObject, (ulong)n);
                    rc = RadosNative.WriteOpOperate(op, _io, oid, 0, 0);
                }
                finally
                {
                    RadosNative.ReleaseWriteOp(op);
                }
            }

            // A failed release costs cluster space, never data (ADR 0009): it must not fail the commit.
            _ = rc;
            offsetBytes += n;
            lengthBytes -= n;
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;

        // An asynchronous read in flight writes into its caller's buffer until librados completes it.
        _reads.WaitForNone();
        FreeAioReads();

        // Every write started must finish before its buffer is freed and the lock released; held
        // writes get one more try (the pool's close flushed, so normally there are none).
        try
        {
            _writes.WaitForStarted();
        }
        catch (StorageException)
        {
        }

        _writes.Close();

        _lock.Dispose();
        RadosNative.IoCtxDestroy(_io);
        RadosNative.Shutdown(_cluster);
    }

    /// <summary>The object, offset inside it and byte count of the first piece of [offset, offset+length) that stays in one object.</summary>
    private (string Oid, long InObject, int Length) Piece(long offsetBytes, int length)
    {
        CheckRange(offsetBytes, length);
        var inObject = offsetBytes % ObjectBytes;
        return (_location.DataObject(offsetBytes / ObjectBytes), inObject, (int)Math.Min(length, ObjectBytes - inObject));
    }

    private void CheckRange(long offsetBytes, long length)
    {
        if (offsetBytes < 0 || length < 0 || offsetBytes > CapacityBytes - length)
        {
            throw new StorageException(StorageError.OutOfRange, $"{length} bytes at {offsetBytes} lie beyond {Location}'s capacity of {CapacityBytes} bytes");
        }
    }

    private StorageException Failure(int rc, string what) => -rc switch
    {
        RadosNative.Enospc or RadosNative.Edquot => new StorageException(
            StorageError.NoSpace, $"{what} failed: the RADOS pool {_location.Pool} is full or over its quota ({RadosNative.Describe(rc)}); free space in the cluster or raise the pool's quota"),
        RadosNative.Etimedout => new StorageException(
            StorageError.IoError, $"{what} failed: the Ceph cluster did not answer within {_location.TimeoutSeconds} s (an OSD or monitor is down or unreachable){(what.StartsWith("write", StringComparison.Ordinal) ? "; the write was not acknowledged" : "")}"),
        _ => new StorageException(StorageError.IoError, $"{what} in RADOS pool {_location.Pool} failed: {RadosNative.Describe(rc)}"),
    };

    private void ThrowIfFenced()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _lock.ThrowIfLost(Location);
    }

    private static (nint Cluster, nint Io) Connect(RadosLocation where)
    {
        nint cluster;
        try
        {
            Check(RadosNative.Create2(out cluster, "ceph", "client." + where.User, 0), where, "creating the cluster handle");
        }
        catch (DllNotFoundException ex)
        {
            throw new StorageException(StorageError.Unsupported, $"RADOS stores need librados (Debian package librados2): {ex.Message}", ex);
        }

        try
        {
            if (!File.Exists(where.ConfPath))
            {
                throw new StorageException(StorageError.NotFound, $"the Ceph configuration {where.ConfPath} does not exist; give the cluster's ceph.conf with --ceph-conf (conf= in the location)");
            }

            Check(RadosNative.ConfReadFile(cluster, where.ConfPath), where, $"reading {where.ConfPath}");
            var seconds = where.TimeoutSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);

            // librados waits forever by default; these make an unreachable cluster an error within the timeout.
            foreach (var option in new[] { "rados_osd_op_timeout", "rados_mon_op_timeout", "client_mount_timeout" })
            {
                Check(RadosNative.ConfSet(cluster, option, seconds), where, $"setting {option}");
            }

            // librados asks the monitors for a new OSD map only when it finds an operation "laggy"
            // (older than objecter_timeout, default 10 s, checked every objecter_tick_interval,
            // default 5 s). With operation timeouts shorter than that it never does, and after an
            // OSD restarts (at a new address) it keeps sending to the dead one: a store that never
            // recovers without a restart. One second for both makes it ask within about two.
            Check(RadosNative.ConfSet(cluster, "objecter_timeout", "1"), where, "setting objecter_timeout");
            Check(RadosNative.ConfSet(cluster, "objecter_tick_interval", "1"), where, "setting objecter_tick_interval");
            Check(RadosNative.ConfSet(cluster, "log_to_stderr", "false"), where, "setting log_to_stderr");
            Check(RadosNative.Connect(cluster), where, $"connecting to the Ceph cluster as client.{where.User}");
            Check(RadosNative.IoCtxCreate(cluster, where.Pool, out var io), where, $"opening RADOS pool {where.Pool}");
            return (cluster, io);
        }
        catch
        {
            RadosNative.Shutdown(cluster);
            throw;
        }
    }

    internal static void Check(int rc, RadosLocation where, string what)
    {
        if (rc >= 0)
        {
            return;
        }

        var error = -rc == RadosNative.Enoent ? StorageError.NotFound : StorageError.IoError;
        var hint = -rc == RadosNative.Etimedout
            ? $"; no monitor answered within {where.TimeoutSeconds} s, check mon_host in {where.ConfPath} and that the cluster is up"
            : "";
        throw new StorageException(error, $"{what} failed: {RadosNative.Describe(rc)}{hint}");
    }

    /// <summary>The pool's max_avail from <c>ceph df</c>: what can still be written, after replication and the full ratio.</summary>
    private static long PoolMaxAvailable(nint cluster, RadosLocation where)
    {
        var json = MonCommand(cluster, where, """{"prefix":"df","format":"json"}""");
        using var doc = JsonDocument.Parse(json);
        foreach (var pool in doc.RootElement.GetProperty("pools").EnumerateArray())
        {
            if (pool.GetProperty("name").GetString() == where.Pool)
            {
                var available = pool.GetProperty("stats").GetProperty("max_avail").GetInt64();
                if (available < 16 * Lineage.BlockBytes)
                {
                    throw new StorageException(StorageError.NoSpace, $"RADOS pool {where.Pool} has {available} bytes available; add OSDs or free space in the cluster, or give --capacity");
                }

                return available;
            }
        }

        throw new StorageException(StorageError.Unavailable, $"the cluster reports no space figures for RADOS pool {where.Pool} yet (they come from a running ceph-mgr); start the manager or give the store's capacity");
    }

    private static string MonCommand(nint cluster, RadosLocation where, string command)
    {
        var text = Marshal.StringToCoTaskMemUTF8(command);
        try
        {
            var rc = RadosNative.MonCommand(cluster, ref text, 1, 0, 0, out var outBuffer, out var outLength, out var status, out var statusLength);
            try
            {
                if (rc < 0)
                {
                    var why = statusLength > 0 ? Marshal.PtrToStringUTF8(status, (int)statusLength) : "";
                    Check(rc, where, $"asking the monitors '{command}' ({why})");
                }

                return outLength > 0 ? Marshal.PtrToStringUTF8(outBuffer, (int)outLength) : "";
            }
            finally
            {
                if (outBuffer != 0)
                {
                    RadosNative.BufferFree(outBuffer);
                }

                if (status != 0)
                {
                    RadosNative.BufferFree(status);
                }
            }
        }
        finally
        {
            Marshal.FreeCoTaskMem(text);
        }
    }
}
