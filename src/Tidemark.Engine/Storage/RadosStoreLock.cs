using System.Text;

namespace Tidemark.Engine.Storage;

/// <summary>
/// The lock object of a RADOS store (ADR 0017): an exclusive RADOS lock on PREFIX.lock with a lease,
/// renewed in the background while the store is open, so two servers never write the same store.
/// While the lease has run out (the cluster did not answer renewals) the store refuses all I/O and
/// tries to take the lock again every second; it gets it back only if nobody held it meanwhile (the
/// note in the object still names this open). A lock that someone else took is lost for good.
/// Holds who took it (host, boot, pid, cookie) in the object, for the refusal message, for breaking
/// a lock whose holder on this machine is dead, and for that check.
/// </summary>
internal sealed class RadosStoreLock : IDisposable
{
    private const string LockName = "tidemark";

    // Cookies of the stores this process has open: a lock that names this process with another
    // cookie is a leftover of a handle whose unlock failed (the cluster was away), not a live holder.
    private static readonly HashSet<string> LiveCookies = [];

    private readonly nint _io;
    private readonly RadosLocation _location;
    private readonly string _cookie = Guid.NewGuid().ToString("N");
    private readonly Timer _renewal;
    private readonly Lock _lifetime = new();
    private Exception? _lost;
    private long _leaseUntil; // Environment.TickCount64 when the lease runs out unless renewed
    private bool _disposed;

    private RadosStoreLock(nint io, RadosLocation location, TimeSpan lease)
    {
        _io = io;
        _location = location;
        _lease = lease;
        _renewal = new Timer(_ => Renew());
    }

    /// <summary>How long the lock holds without renewal; a server killed with -9 elsewhere blocks others this long.</summary>
    public static TimeSpan LeaseDuration { get; } = TimeSpan.FromSeconds(30);

    private readonly TimeSpan _lease;
    private bool _lapsed;

    /// <summary>True while the lock is this open's: not lost, and the lease runs.</summary>
    public bool IsHeld => Volatile.Read(ref _lost) is null && Environment.TickCount64 < Volatile.Read(ref _leaseUntil);

    /// <summary>Takes the lock, or throws Busy naming the holder.</summary>
    public static RadosStoreLock Take(nint io, RadosLocation location, TimeSpan? lease = null)
    {
        var storeLock = new RadosStoreLock(io, location, lease ?? LeaseDuration);
        try
        {
            storeLock.Acquire();
            return storeLock;
        }
        catch
        {
            storeLock._renewal.Dispose();
            throw;
        }
    }

    /// <summary>Throws while the lease has run out without a renewal, and for good once someone else took the lock.</summary>
    public void ThrowIfLost(string store)
    {
        if (Volatile.Read(ref _lost) is { } lost)
        {
            throw new StorageException(StorageError.IoError, $"{store} lost its lock ({lost.Message}); this server no longer writes it. Stop the other holder and reopen the pool (restart the server)", lost);
        }

        if (Environment.TickCount64 >= Volatile.Read(ref _leaseUntil))
        {
            // Another server may hold the store by now: nothing goes out until the lock is ours again.
            throw new StorageException(
                StorageError.IoError,
                $"{store}: the lease on {_location.LockObject} ran out while the Ceph cluster did not answer; this server writes nothing until it has the lock again (it retries every second, and takes it back if nobody held it meanwhile)");
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

        RadosNative.Unlock(_io, _location.LockObject, LockName, _cookie);
        lock (LiveCookies)
        {
            LiveCookies.Remove(_cookie);
        }
    }

    private void Acquire()
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
                $"{_location} is in use by another Tidemark server ({Holder().Text}); two servers never open the same store. Stop that server, or wait {LeaseDuration.TotalSeconds:F0} s for its lease to run out if it is gone");
        }

        RadosBackingStore.Check(rc, _location, $"locking {_location.LockObject}");
        lock (LiveCookies)
        {
            LiveCookies.Add(_cookie);
        }

        Volatile.Write(ref _leaseUntil, Environment.TickCount64 + (long)_lease.TotalMilliseconds);

        // Who holds it, for the message another server shows (RADOS keeps only the client id and
        // address), so a restart on this machine can tell that the holder died, and so a retake
        // after a lapse can tell that nobody held it meanwhile (the cookie).
        var who = Encoding.UTF8.GetBytes($"host {Environment.MachineName} pid {Environment.ProcessId} started {ProcessStart(Environment.ProcessId)} boot {BootId()} cookie {_cookie} since {DateTimeOffset.UtcNow:O}");
        RadosBackingStore.Check(RadosNative.WriteFull(_io, _location.LockObject, ref who[0], (nuint)who.Length), _location, $"writing {_location.LockObject}");
        _renewal.Change(RenewalPeriod, RenewalPeriod);
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

    private TimeSpan RenewalPeriod => _lease / 3;

    private int Lock()
    {
        var duration = new RadosNative.TimeVal { Seconds = (long)_lease.TotalSeconds };
        return RadosNative.LockExclusive(_io, _location.LockObject, LockName, _cookie, "tidemark pool store", ref duration, RadosNative.LockFlagMayRenew);
    }

    private void Renew()
    {
        lock (_lifetime)
        {
            if (_disposed || _lost is not null)
            {
                return;
            }

            var attempt = Environment.TickCount64;
            var rc = Lock();
            if (rc is -RadosNative.Ebusy or -RadosNative.Eexist)
            {
                LoseFor($"{Holder().Text} holds it");
                return;
            }

            string? other = null;
            if (rc >= 0 && !TryReadOtherHolder(out other))
            {
                rc = -RadosNative.Etimedout; // the note is unknown: not renewed, tried again below
            }

            if (rc >= 0 && other is not null)
            {
                // The lock had lapsed and someone took it, wrote, and let it go: this open's view of
                // the store is stale, so it must never write again.
                RadosNative.Unlock(_io, _location.LockObject, LockName, _cookie);
                LoseFor($"another server held it while this one's lease had run out ({other})");
                return;
            }

            if (rc >= 0)
            {
                Volatile.Write(ref _leaseUntil, attempt + (long)_lease.TotalMilliseconds);
                if (_lapsed)
                {
                    _lapsed = false;
                    _renewal.Change(RenewalPeriod, RenewalPeriod);
                }

                return;
            }

            // The cluster did not answer. While the lease still runs this is tried again at the next
            // period; once it ran out, every second, so I/O resumes soon after the cluster is back.
            if (attempt >= Volatile.Read(ref _leaseUntil) && !_lapsed)
            {
                _lapsed = true;
                _renewal.Change(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
            }
        }
    }

    private void LoseFor(string why)
    {
        Volatile.Write(ref _lost, new StorageException(StorageError.IoError, $"renewing the lock on {_location.LockObject} failed: {why}"));
        _renewal.Change(Timeout.Infinite, Timeout.Infinite);
    }

    /// <summary>
    /// Reads the note in the lock object: <paramref name="other"/> is it when it names another open
    /// than this one (another cookie), or says the object was removed. False when it cannot be read now.
    /// </summary>
    private bool TryReadOtherHolder(out string? other)
    {
        var buffer = new byte[512];
        var read = RadosNative.Read(_io, _location.LockObject, ref buffer[0], (nuint)buffer.Length, 0);
        if (read == -RadosNative.Enoent || read == 0)
        {
            other = "the lock object was removed";
            return true;
        }

        if (read < 0)
        {
            other = null;
            return false;
        }

        var note = Encoding.UTF8.GetString(buffer, 0, read);
        other = note.Contains($"cookie {_cookie} ", StringComparison.Ordinal) ? null : note;
        return true;
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
