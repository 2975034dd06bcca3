using System.Runtime.InteropServices;
using System.Text.Json;

namespace Tidemark.Engine.Storage;

/// <summary>
/// A store in a Ceph RADOS pool (ADR 0017): the byte space cut into 4 MiB objects, writes started
/// as librados aio (many in flight, bounded) and waited for by <see cref="Flush"/>, an exclusive
/// lock object with a renewed lease so two servers never write the same store, and space given
/// back by removing or zeroing objects.
/// </summary>
public sealed class RadosBackingStore : IBackingStore
{
    /// <summary>Bytes per RADOS object: RBD's default; a 1 MiB extent is one operation, a 4 KiB write a partial write.</summary>
    public const int ObjectBytes = 4 << 20;


    private readonly RadosLocation _location;
    private readonly RadosStoreLock _lock;
    private readonly nint _cluster;
    private readonly nint _io;
    private readonly Lock _pendingLock = new();
    private readonly Queue<PendingWrite> _pending = new();
    private readonly Dictionary<string, int> _pendingPerObject = new(StringComparer.Ordinal);
    private long _pendingBytes;
    private StorageException? _writeFailure;
    private bool _disposed;

    private RadosBackingStore(RadosLocation location, nint cluster, nint io, long capacityBytes, RadosStoreLock storeLock)
    {
        _location = location;
        _cluster = cluster;
        _io = io;
        CapacityBytes = capacityBytes;
        Location = location.ToString();
        _lock = storeLock;
    }

    public string Location { get; }

    public long CapacityBytes { get; }

    /// <summary>Connects, takes the lock and, when <paramref name="capacityBytes"/> is not positive, sizes the store from the pool's free space.</summary>
    public static RadosBackingStore Open(string location, long capacityBytes)
    {
        var where = RadosLocation.Parse(location);
        var (cluster, io) = Connect(where);
        try
        {
            var capacity = capacityBytes > 0 ? capacityBytes : PoolMaxAvailable(cluster, where);
            capacity = capacity / Lineage.BlockBytes * Lineage.BlockBytes;
            return new RadosBackingStore(where, cluster, io, capacity, RadosStoreLock.Take(io, where));
        }
        catch
        {
            RadosNative.IoCtxDestroy(io);
            RadosNative.Shutdown(cluster);
            throw;
        }
    }

    public void Read(long offsetBytes, Span<byte> destination)
    {
        ThrowIfFenced();
        while (destination.Length > 0)
        {
            var (oid, inObject, n) = Piece(offsetBytes, destination.Length);
            var chunk = destination[..n];
            DrainIfPending(oid);
            var rc = RadosNative.Read(_io, oid, ref MemoryMarshal.GetReference(chunk), (nuint)n, (ulong)inObject);
            if (rc == -RadosNative.Enoent)
            {
                chunk.Clear(); // never written: zeros, like a hole in a sparse file
            }
            else if (rc < 0)
            {
                throw Failure(rc, $"read of {n} bytes at {offsetBytes} from {oid}");
            }
            else if (rc < n)
            {
                chunk[rc..].Clear(); // beyond the object's end: never written
            }

            offsetBytes += n;
            destination = destination[n..];
        }
    }

    /// <summary>
    /// Starts the write (librados aio on a copy of the data) and returns: like a disk's volatile
    /// cache, it is durable once <see cref="Flush"/> returned. Up to <see cref="MaxPendingWrites"/>
    /// writes (and <see cref="MaxPendingBytes"/>) are in flight at once; beyond that the writer waits
    /// for the oldest, so memory stays bounded.
    /// </summary>
    public void Write(long offsetBytes, ReadOnlySpan<byte> source)
    {
        ThrowIfFenced();
        ThrowIfWriteFailed();
        while (source.Length > 0)
        {
            var (oid, inObject, n) = Piece(offsetBytes, source.Length);
            StartWrite(oid, inObject, source[..n], offsetBytes);
            offsetBytes += n;
            source = source[n..];
        }
    }

    /// <summary>
    /// Waits for every write started before it. A RADOS write completes only once every replica
    /// committed it, so then they are all durable. A write that failed fails this flush and every
    /// later one (and every later write): what it held is lost, so the engine must not commit
    /// metadata over it; reopening the pool starts again from the last durable state. A store that
    /// lost its lock says so here too.
    /// </summary>
    public void Flush()
    {
        ThrowIfFenced();
        lock (_pendingLock)
        {
            while (_pending.Count > 0)
            {
                Reap(_pending.Dequeue());
            }
        }

        ThrowIfWriteFailed();
    }

    /// <summary>Writes in flight at once, at most (RBD's default queue is 128 ops; 64 keeps a 2-core OSD busy).</summary>
    public const int MaxPendingWrites = 64;

    /// <summary>Bytes of copied write data in flight at once, at most.</summary>
    public const long MaxPendingBytes = 64L << 20;

    private unsafe void StartWrite(string oid, long inObject, ReadOnlySpan<byte> data, long offsetBytes)
    {
        var buffer = (nint)NativeMemory.Alloc((nuint)data.Length);
        data.CopyTo(new Span<byte>((void*)buffer, data.Length));
        var rc = RadosNative.AioCreateCompletion(0, 0, 0, out var completion);
        if (rc < 0)
        {
            NativeMemory.Free((void*)buffer);
            throw Failure(rc, $"starting a write of {data.Length} bytes at {offsetBytes} to {oid}");
        }

        lock (_pendingLock)
        {
            rc = RadosNative.AioWrite(_io, oid, completion, buffer, (nuint)data.Length, (ulong)inObject);
            if (rc < 0)
            {
                RadosNative.AioRelease(completion);
                NativeMemory.Free((void*)buffer);
                throw Failure(rc, $"write of {data.Length} bytes at {offsetBytes} to {oid}");
            }

            _pending.Enqueue(new PendingWrite(completion, buffer, data.Length, oid, offsetBytes));
            _pendingBytes += data.Length;
            _pendingPerObject[oid] = _pendingPerObject.GetValueOrDefault(oid) + 1;
            while (_pending.Count > MaxPendingWrites || _pendingBytes > MaxPendingBytes)
            {
                Reap(_pending.Dequeue());
            }
        }
    }

    /// <summary>Waits for one write, frees its copy, and keeps the first failure for the next flush.</summary>
    private unsafe void Reap(PendingWrite write)
    {
        var rc = RadosNative.AioWaitForComplete(write.Completion);
        if (rc >= 0)
        {
            rc = RadosNative.AioGetReturnValue(write.Completion);
        }

        RadosNative.AioRelease(write.Completion);
        NativeMemory.Free((void*)write.Buffer);
        _pendingBytes -= write.Length;
        if (--_pendingPerObject[write.Oid] == 0)
        {
            _pendingPerObject.Remove(write.Oid);
        }

        if (rc < 0 && _writeFailure is null)
        {
            _writeFailure = Failure(rc, $"write of {write.Length} bytes at {write.Offset} to {write.Oid}");
        }
    }

    private void ThrowIfWriteFailed()
    {
        StorageException? failure;
        lock (_pendingLock)
        {
            failure = _writeFailure;
        }

        if (failure is not null)
        {
            throw new StorageException(failure.Error, $"{failure.Message}; the store takes no more writes until the pool is reopened", failure);
        }
    }

    /// <summary>Before reading an object with writes in flight, waits for them (reads see every write started before them).</summary>
    private void DrainIfPending(string oid)
    {
        lock (_pendingLock)
        {
            while (_pendingPerObject.ContainsKey(oid) && _pending.Count > 0)
            {
                Reap(_pending.Dequeue());
            }
        }
    }

    private readonly record struct PendingWrite(nint Completion, nint Buffer, int Length, string Oid, long Offset);

    /// <summary>Removes the objects a freed range covers whole and zeroes the rest of it (ENOENT counts as done).</summary>
    public void Discard(long offsetBytes, long lengthBytes)
    {
        if (_lock.IsLost)
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

        // Every write started must finish before its buffer is freed and the lock released.
        lock (_pendingLock)
        {
            while (_pending.Count > 0)
            {
                Reap(_pending.Dequeue());
            }
        }

        _lock.Dispose();
        RadosNative.IoCtxDestroy(_io);
        RadosNative.Shutdown(_cluster);
    }

    /// <summary>The object, offset inside it and byte count of the first piece of [offset, offset+length) that stays in one object.</summary>
    private (string Oid, long InObject, int Length) Piece(long offsetBytes, int length)
    {
        if (offsetBytes < 0 || offsetBytes + length > CapacityBytes)
        {
            throw new StorageException(StorageError.OutOfRange, $"{length} bytes at {offsetBytes} lie beyond {Location}'s capacity of {CapacityBytes} bytes");
        }

        var inObject = offsetBytes % ObjectBytes;
        return (_location.DataObject(offsetBytes / ObjectBytes), inObject, (int)Math.Min(length, ObjectBytes - inObject));
    }

    private StorageException Failure(int rc, string what) => -rc switch
    {
        RadosNative.Enospc or RadosNative.Edquot => new StorageException(
            StorageError.NoSpace, $"{what} failed: the RADOS pool {_location.Pool} is full or over its quota ({RadosNative.Describe(rc)}); free space in the cluster or raise the pool's quota"),
        RadosNative.Etimedout => new StorageException(
            StorageError.IoError, $"{what} failed: the Ceph cluster did not answer within {_location.TimeoutSeconds} s (an OSD or monitor is down or unreachable); the write was not acknowledged"),
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
