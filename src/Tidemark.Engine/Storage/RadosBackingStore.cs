using System.Runtime.InteropServices;
using System.Text;
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

    private const string LockName = "tidemark";

    // Cookies of the stores this process has open: a lock that names this process with another
    // cookie is a leftover of a handle whose unlock failed (the cluster was away), not a live holder.
    private static readonly HashSet<string> LiveCookies = [];

    private readonly RadosLocation _location;
    private readonly string _cookie = Guid.NewGuid().ToString("N");
    private readonly Timer _renewal;
    private readonly Lock _lifetime = new();
    private nint _cluster;
    private nint _io;
    private Exception? _fenced;
    private readonly Lock _pendingLock = new();
    private readonly Queue<PendingWrite> _pending = new();
    private readonly Dictionary<string, int> _pendingPerObject = new(StringComparer.Ordinal);
    private long _pendingBytes;
    private StorageException? _writeFailure;
    private long _leaseUntil; // Environment.TickCount64 when the lease runs out unless renewed
    private bool _disposed;

    private RadosBackingStore(RadosLocation location, nint cluster, nint io, long capacityBytes)
    {
        _location = location;
        _cluster = cluster;
        _io = io;
        CapacityBytes = capacityBytes;
        Location = location.ToString();
        _renewal = new Timer(_ => Renew());
    }

    public string Location { get; }

    public long CapacityBytes { get; }

    /// <summary>How long the lock holds without renewal; a server killed with -9 blocks others this long.</summary>
    public static TimeSpan LeaseDuration { get; } = TimeSpan.FromSeconds(30);

    /// <summary>Connects, takes the lock and, when <paramref name="capacityBytes"/> is not positive, sizes the store from the pool's free space.</summary>
    public static RadosBackingStore Open(string location, long capacityBytes)
    {
        var where = RadosLocation.Parse(location);
        var (cluster, io) = Connect(where);
        try
        {
            var capacity = capacityBytes > 0 ? capacityBytes : PoolMaxAvailable(cluster, where);
            capacity = capacity / Lineage.BlockBytes * Lineage.BlockBytes;
            var store = new RadosBackingStore(where, cluster, io, capacity);
            try
            {
                store.TakeLock();
            }
            catch
            {
                store._cluster = 0;
                store._io = 0;
                store._renewal.Dispose();
                throw;
            }

            return store;
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
        if (Volatile.Read(ref _fenced) is not null)
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
        lock (_lifetime)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        using (var stopped = new ManualResetEvent(false))
        {
            // Wait for a renewal in progress, so the unlock below is the last lock call.
            if (_renewal.Dispose(stopped))
            {
                stopped.WaitOne();
            }
        }

        if (_io != 0)
        {
            // Every write started must finish before its buffer is freed and the lock released.
            lock (_pendingLock)
            {
                while (_pending.Count > 0)
                {
                    Reap(_pending.Dequeue());
                }
            }

            RadosNative.Unlock(_io, _location.LockObject, LockName, _cookie);
            lock (LiveCookies)
            {
                LiveCookies.Remove(_cookie);
            }

            RadosNative.IoCtxDestroy(_io);
            _io = 0;
        }

        if (_cluster != 0)
        {
            RadosNative.Shutdown(_cluster);
            _cluster = 0;
        }
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
        if (Volatile.Read(ref _fenced) is null && Environment.TickCount64 >= Volatile.Read(ref _leaseUntil))
        {
            // The lease ran out without a renewal: another server may hold the store by now.
            Volatile.Write(ref _fenced, new StorageException(StorageError.IoError, $"the lease on {_location.LockObject} ran out before it could be renewed"));
        }

        if (Volatile.Read(ref _fenced) is { } fenced)
        {
            throw new StorageException(StorageError.IoError, $"{Location} lost its lock ({fenced.Message}); this server no longer writes it. Restart the server once the cluster is reachable", fenced);
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
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

    private static void Check(int rc, RadosLocation where, string what)
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

    private void TakeLock()
    {
        var rc = Lock();
        if (rc is -RadosNative.Ebusy or -RadosNative.Eexist && BreakIfHolderDied())
        {
            rc = Lock();
        }

        if (rc is -RadosNative.Ebusy or -RadosNative.Eexist)
        {
            throw new StorageException(
                StorageError.Busy,
                $"{Location} is in use by another Tidemark server ({Holder().Text}); two servers never open the same store. Stop that server, or wait {LeaseDuration.TotalSeconds:F0} s for its lease to run out if it is gone");
        }

        Check(rc, _location, $"locking {_location.LockObject}");
        lock (LiveCookies)
        {
            LiveCookies.Add(_cookie);
        }

        Volatile.Write(ref _leaseUntil, Environment.TickCount64 + (long)LeaseDuration.TotalMilliseconds);

        // Who holds it, for the message another server shows (RADOS keeps only the client id and
        // address), and so a restart on this machine can tell that the holder died.
        var who = Encoding.UTF8.GetBytes($"host {Environment.MachineName} pid {Environment.ProcessId} started {ProcessStart(Environment.ProcessId)} boot {BootId()} since {DateTimeOffset.UtcNow:O}");
        Check(RadosNative.WriteFull(_io, _location.LockObject, ref who[0], (nuint)who.Length), _location, $"writing {_location.LockObject}");
        var period = LeaseDuration / 3;
        _renewal.Change(period, period);
    }

    /// <summary>
    /// A server killed with -9 leaves its lock until the lease runs out. When the holder ran on this
    /// machine since its last boot and that process is gone (its pid is free or belongs to a process
    /// started at another time), nothing can still write through it: break the lock at once, so a
    /// restarted server does not wait for the lease. The same holds for a lock of this process that
    /// no open store of it holds (an earlier handle whose unlock failed while the cluster was away).
    /// A holder elsewhere is never second-guessed.
    /// </summary>
    private bool BreakIfHolderDied()
    {
        var (_, client, cookie, note) = Holder();
        if (client is null || cookie is null || note is null)
        {
            return false;
        }

        var fields = note.Split(' ');
        string? Field(string key)
        {
            var i = Array.IndexOf(fields, key);
            return i >= 0 && i + 1 < fields.Length ? fields[i + 1] : null;
        }

        if (Field("host") != Environment.MachineName || Field("boot") != BootId()
            || !int.TryParse(Field("pid"), System.Globalization.CultureInfo.InvariantCulture, out var pid))
        {
            return false;
        }

        var alive = ProcessStart(pid) is { } started && started == Field("started");
        bool ours;
        lock (LiveCookies)
        {
            ours = pid == Environment.ProcessId && !LiveCookies.Contains(cookie);
        }

        if (alive && !ours)
        {
            return false;
        }

        return RadosNative.BreakLock(_io, _location.LockObject, LockName, client, cookie) is 0 or -RadosNative.Enoent;
    }

    private static string BootId()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    /// <summary>Field 22 of /proc/PID/stat (start time in clock ticks since boot), or null when no such process runs.</summary>
    private static string? ProcessStart(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");

            // The command name (field 2) is in parentheses and may hold spaces; count from after it.
            var after = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return after.Length > 19 ? after[19] : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private int Lock()
    {
        var duration = new RadosNative.TimeVal { Seconds = (long)LeaseDuration.TotalSeconds };
        return RadosNative.LockExclusive(_io, _location.LockObject, LockName, _cookie, "tidemark pool store", ref duration, RadosNative.LockFlagMayRenew);
    }

    private void Renew()
    {
        lock (_lifetime)
        {
            if (_disposed || _fenced is not null)
            {
                return;
            }

            var attempt = Environment.TickCount64;
            var rc = Lock();
            if (rc >= 0)
            {
                Volatile.Write(ref _leaseUntil, attempt + (long)LeaseDuration.TotalMilliseconds);
                return;
            }

            // Someone else holds the lock, or the lease ran out before the cluster answered: from here
            // on this store writes nothing, so two servers never write at once. A failure while the
            // lease still runs (an OSD restarting) is tried again at the next period.
            if (rc is -RadosNative.Ebusy or -RadosNative.Eexist || attempt >= Volatile.Read(ref _leaseUntil))
            {
                Volatile.Write(ref _fenced, new StorageException(StorageError.IoError, $"renewing the lock on {_location.LockObject} failed: {RadosNative.Describe(rc)}"));
                _renewal.Change(Timeout.Infinite, Timeout.Infinite);
            }
        }
    }

    /// <summary>The holder: "client.4123 at 127.0.0.1:0/3324, host h pid 77 ...", its client id and cookie, and the note it wrote.</summary>
    private (string Text, string? Client, string? Cookie, string? Note) Holder()
    {
        var tag = new byte[256];
        var clients = new byte[1024];
        var cookies = new byte[1024];
        var addrs = new byte[1024];
        nuint tl = (nuint)tag.Length, cl = (nuint)clients.Length, kl = (nuint)cookies.Length, al = (nuint)addrs.Length;
        var n = RadosNative.ListLockers(_io, _location.LockObject, LockName, out _, ref tag[0], ref tl, ref clients[0], ref cl, ref cookies[0], ref kl, ref addrs[0], ref al);
        string? client = null, cookie = null;
        var text = "holder unknown";
        if (n > 0)
        {
            client = FirstString(clients, cl);
            cookie = FirstString(cookies, kl);
            text = $"{client} at {FirstString(addrs, al)}";
        }

        var buffer = new byte[512];
        var read = RadosNative.Read(_io, _location.LockObject, ref buffer[0], (nuint)buffer.Length, 0);
        var note = read > 0 ? Encoding.UTF8.GetString(buffer, 0, read) : null;
        return (note is null ? text : $"{text}, {note}", client, cookie, note);
    }

    private static string FirstString(byte[] buffer, nuint length)
    {
        var span = buffer.AsSpan(0, (int)Math.Min((nuint)buffer.Length, length));
        var end = span.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end >= 0 ? span[..end] : span);
    }
}
